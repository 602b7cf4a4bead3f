"""`djctl db upgrade` on an empty database gives exactly the declared schema; again, it changes nothing."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from djctl.queue import engines as store
from djctl.queue import migrations, schema
from tests.support.commands import djctl_cmd
from tests.support.databases import fresh_database


@pytest.fixture
def empty_url(db_kind, tmp_path) -> Iterator[str]:
    yield from fresh_database(db_kind, tmp_path, "empty")


@pytest.fixture
def reference_url(db_kind, tmp_path) -> Iterator[str]:
    """A database made straight from the declared tables (schema.metadata), no migrations."""
    for url in fresh_database(db_kind, tmp_path, "ref"):
        eng = store.make_engine(url)
        schema.metadata.create_all(eng)
        migrations.version_metadata.create_all(eng)
        eng.dispose()
        yield url


def snapshot(url: str) -> dict:
    """Everything reflection can tell about the tables: columns, types, nullability, defaults, keys, indexes."""
    eng = create_engine(store.normalize_url(url))
    try:
        insp = inspect(eng)
        tables = {}
        for name in sorted(insp.get_table_names()):
            tables[name] = {
                "columns": [(c["name"], repr(c["type"]), c["nullable"], c.get("default"), c.get("autoincrement"))
                            for c in insp.get_columns(name)],
                "pk": insp.get_pk_constraint(name)["constrained_columns"],
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"]),
                     repr(sorted((k, str(v)) for k, v in (i.get("dialect_options") or {}).items())))
                    for i in insp.get_indexes(name)
                ),
                "unique": sorted((u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(name)),
            }
        return tables
    finally:
        eng.dispose()


def versions(url: str) -> list[tuple]:
    eng = create_engine(store.normalize_url(url))
    try:
        with eng.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT version, description, applied_at FROM djctl_schema_migrations ORDER BY version"))]
    finally:
        eng.dispose()


def upgrade(url: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(djctl_cmd("--database-url", url, "db", "upgrade"), env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def env(djctl_env) -> dict:
    return {k: v for k, v in djctl_env.items() if k not in ("DJ_DATABASE_URL", "DATABASE_URL")}


def test_upgrade_gives_exactly_the_declared_schema(empty_url, reference_url, env):
    # An application's own tables, including its own migration table, are left alone.
    app = create_engine(store.normalize_url(empty_url))
    with app.begin() as conn:
        conn.execute(text("CREATE TABLE schema_migrations (version VARCHAR(50) NOT NULL)"))
        conn.execute(text("INSERT INTO schema_migrations VALUES ('20260101')"))
    app.dispose()

    first = upgrade(empty_url, env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        *(f"Applied migration {m.version}: {m.description}" for m in migrations.MIGRATIONS),
        f"Database is at version {migrations.LATEST}.",
    ]

    got = snapshot(empty_url)
    assert got.pop("schema_migrations")["columns"][0][0] == "version"
    assert got == snapshot(reference_url)

    # And against the declaration itself: every declared table, column, nullability and index.
    assert set(got) == {*schema.metadata.tables, migrations.schema_migrations.name}
    for table in schema.metadata.sorted_tables:
        columns = {c[0]: c[2] for c in got[table.name]["columns"]}
        assert columns == {c.name: c.nullable for c in table.columns}, table.name
        reflected = {i[0]: (i[1], i[2]) for i in got[table.name]["indexes"]}
        for index in table.indexes:
            if index.name in reflected:
                assert reflected[index.name] == (tuple(c.name for c in index.columns), bool(index.unique))
        assert got[table.name]["pk"] == [c.name for c in table.primary_key.columns]
    assert [v[:2] for v in versions(empty_url)] == [(m.version, m.description) for m in migrations.MIGRATIONS]

    app = create_engine(store.normalize_url(empty_url))
    with app.connect() as conn:
        assert conn.execute(text("SELECT version FROM schema_migrations")).scalars().all() == ["20260101"]
        if app.dialect.name == "postgresql":
            triggers = conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars().all()
            assert "delayed_jobs_notify" in triggers
    app.dispose()


def test_a_second_upgrade_changes_nothing(empty_url, env):
    assert upgrade(empty_url, env).returncode == 0
    before, applied = snapshot(empty_url), versions(empty_url)
    again = upgrade(empty_url, env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"Database is at version {migrations.LATEST}."]
    assert snapshot(empty_url) == before
    assert versions(empty_url) == applied


def test_concurrent_upgrades_apply_each_migration_once(empty_url, reference_url, env):
    procs = [subprocess.Popen(djctl_cmd("--database-url", empty_url, "db", "upgrade"), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [(p.wait(60), *p.communicate()) for p in procs]
    assert [r[0] for r in results] == [0] * 8, [r[2] for r in results]
    applied = [line for r in results for line in r[1].splitlines() if line.startswith("Applied")]
    assert len(applied) == len(migrations.MIGRATIONS)
    got = snapshot(empty_url)
    got.pop("schema_migrations", None)
    assert got == snapshot(reference_url)
    assert [v[:2] for v in versions(empty_url)] == [(m.version, m.description) for m in migrations.MIGRATIONS]


def test_the_engine_upgrades_on_first_use(empty_url):
    from djctl import api

    eng = api.engine(empty_url)
    assert migrations.current_version(eng) == migrations.LATEST
    assert "delayed_jobs" in inspect(eng).get_table_names()
    if make_url(empty_url).get_backend_name() != "sqlite":
        eng.dispose()
        store._engines.pop((os.getpid(), empty_url), None)


def test_upgrade_of_a_database_that_does_not_answer_is_one_line():
    from tests.support.commands import ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("DJ_DATABASE_URL", "DATABASE_URL")}
    env["PYTHONPATH"] = str(ROOT)
    r = upgrade("postgresql://nobody@127.0.0.1:1/nothing", env)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("djctl: cannot upgrade postgresql+psycopg://nobody@")
