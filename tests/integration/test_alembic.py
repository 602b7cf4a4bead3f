"""An application's own Alembic environment (issue 13): autogenerate against a database where
djctl's tables exist proposes nothing about them, with djctl.alembic's hooks in env.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from djctl.queue import engines as store

pytest.importorskip("alembic")

APP_MODELS = '''
from sqlalchemy import Column, Integer, MetaData, String, Table

metadata = MetaData()
notes = Table("app_notes", metadata, Column("id", Integer, primary_key=True), Column("body", String(200)))
'''

HOOKS = ("target_metadata=target_metadata, include_name=djctl.alembic.include_name, "
         "include_object=djctl.alembic.include_object")


def alembic(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")]))
    alembic_bin = str(Path(sys.executable).with_name("alembic"))
    return subprocess.run([alembic_bin, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def make_app(tmp_path: Path, db_url: str, hooks: bool) -> Path:
    app = tmp_path / ("app_with_hooks" if hooks else "app_without_hooks")
    app.mkdir()
    (app / "app_models.py").write_text(APP_MODELS)
    assert alembic(app, "init", "alembic").returncode == 0
    url = store.normalize_url(db_url).render_as_string(hide_password=False)
    ini = (app / "alembic.ini").read_text()
    (app / "alembic.ini").write_text(ini.replace("driver://user:pass@localhost/dbname", url))
    env = (app / "alembic" / "env.py").read_text()
    env = env.replace("target_metadata = None", "from app_models import metadata as target_metadata")
    if hooks:
        env = "import djctl.alembic\n" + env.replace("target_metadata=target_metadata", HOOKS)
    (app / "alembic" / "env.py").write_text(env)
    return app


def autogenerate(app: Path) -> str:
    done = alembic(app, "revision", "--autogenerate", "-m", "app change")
    assert done.returncode == 0, done.stderr
    (revision,) = (app / "alembic" / "versions").glob("*.py")
    return revision.read_text()


def test_autogenerate_proposes_no_change_to_djctls_tables(engine, db_url, tmp_path):
    text = autogenerate(make_app(tmp_path, db_url, hooks=True))
    assert "app_notes" in text, "the app's own table is still proposed"
    for name in ("delayed_jobs", "djctl_processes", "djctl_schema_migrations", "djctl_"):
        assert name not in text


def test_without_the_hooks_autogenerate_would_drop_them(engine, db_url, tmp_path):
    text = autogenerate(make_app(tmp_path, db_url, hooks=False))
    assert "op.drop_table('delayed_jobs')" in text
    assert "op.drop_table('djctl_processes')" in text


def test_the_hooks_answer_for_every_djctl_object():
    import djctl.alembic as hooks
    from djctl.queue.schema import delayed_jobs

    assert hooks.TABLES >= {"delayed_jobs", "djctl_processes", "djctl_schema_migrations"}
    assert not hooks.include_name("delayed_jobs", "table", {})
    assert not hooks.include_name("delayed_jobs_claim", "index", {"table_name": "delayed_jobs"})
    assert hooks.include_name("app_notes", "table", {})
    index = next(iter(delayed_jobs.indexes))
    assert not hooks.include_object(index, index.name, "index", True, None)
    assert not hooks.include_object(delayed_jobs.c.handler, "handler", "column", True, None)
    assert hooks.include_object(None, "app_notes", "table", False, None)
