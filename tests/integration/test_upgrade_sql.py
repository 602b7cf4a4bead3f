"""``djctl db upgrade --sql`` (issue 13): the DDL it would run, for the database's own dialect,
printed without touching the database — and that DDL, run by hand, gives djctl's schema."""

from __future__ import annotations

import os
import subprocess

from sqlalchemy import inspect

from djctl.queue import migrations, schema
from tests.support.commands import djctl_cmd

DJCTL_TABLES = {"delayed_jobs", "djctl_processes", "djctl_schema_migrations"}


def upgrade_sql(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(djctl_cmd("db", "upgrade", "--sql"), env=env, capture_output=True, text=True, timeout=60)


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) & DJCTL_TABLES


def drop_djctl_tables(engine) -> None:
    with engine.begin() as conn:
        for table in reversed(schema.metadata.sorted_tables):
            table.drop(conn, checkfirst=True)
        migrations.schema_migrations.drop(conn, checkfirst=True)
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP FUNCTION IF EXISTS djctl_notify_jobs()")


def run_script(engine, sql: str) -> None:
    with engine.begin() as conn:
        for statement in sql.split(";\n"):
            lines = [line for line in statement.splitlines() if not line.startswith("--")]
            if "".join(lines).strip():
                conn.exec_driver_sql("\n".join(lines))


def test_on_an_up_to_date_database_it_has_nothing_to_run(engine, djctl_env):
    done = upgrade_sql(djctl_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "-- nothing to run"
    assert f"version {migrations.LATEST} to {migrations.LATEST}" in done.stdout


def test_it_prints_the_ddl_and_changes_nothing_and_the_ddl_builds_the_schema(engine, djctl_env, request):
    request.addfinalizer(lambda: migrations.upgrade(engine))
    drop_djctl_tables(engine)
    done = upgrade_sql(djctl_env)
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE delayed_jobs" in done.stdout and "CREATE TABLE djctl_processes" in done.stdout
    assert f"version 0 to {migrations.LATEST}" in done.stdout
    engine.dispose()
    assert tables(engine) == set(), "--sql changed the database"
    run_script(engine, done.stdout)
    assert tables(engine) == DJCTL_TABLES
    assert migrations.current_version(engine) == migrations.LATEST
    again = upgrade_sql(djctl_env)
    assert again.stdout.splitlines()[-1] == "-- nothing to run"


def test_a_sqlite_file_that_does_not_exist_is_not_created(tmp_path):
    missing = tmp_path / "new.sqlite3"
    done = upgrade_sql(dict(os.environ, DJ_DATABASE_URL=f"sqlite:///{missing}", DJ_STATE_DIR=str(tmp_path / ".djctl")))
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE delayed_jobs" in done.stdout
    assert not missing.exists()
