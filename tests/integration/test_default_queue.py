"""The default queue has a name: `--queues default` works it, on every database, old rows included."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy import text

import djctl
from djctl import api, config
from djctl.queue import migrations
from tests.jobs import Touch
from tests.support.commands import djctl_cmd
from tests.support.rows import count


def workoff(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(djctl_cmd("workoff", *args), env=env, capture_output=True, text=True, timeout=120)


def test_jobs_enqueued_without_a_queue_run_under_queues_default(db_url, djctl_env, tmp_path: Path):
    out = tmp_path / "out"
    djctl.enqueue(Touch(str(out), "plain"))
    djctl.enqueue(Touch(str(out), "mail"), queue="mail")
    djctl.delay(Touch(str(out), "delayed")).perform()

    # The Procfile every ActiveJob user writes: one process type per queue.
    r = workoff(djctl_env, "--queues", "default")
    assert r.returncode == 0, r.stderr
    assert sorted(out.read_text().split()) == ["delayed", "plain"]
    assert count(db_url) == 1  # the mail job waits for its own worker
    r = workoff(djctl_env, "--queues", "mail")
    assert r.returncode == 0, r.stderr
    assert sorted(out.read_text().split()) == ["delayed", "mail", "plain"]


def test_the_default_queue_is_settable(db_url, djctl_env, tmp_path: Path):
    config.set_current(config.current().replace(default_queue="main"))
    out = tmp_path / "out"
    djctl.enqueue(Touch(str(out), "x"))
    with api.engine(db_url).connect() as conn:
        assert conn.execute(text("SELECT queue FROM delayed_jobs")).scalar_one() == "main"
    r = workoff({**djctl_env, "DJ_DEFAULT_QUEUE": "main"}, "--queues", "main")
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "x\n"


def test_rows_an_older_djctl_stored_without_a_queue_are_the_default_queues(db_url, djctl_env, tmp_path: Path):
    out = tmp_path / "out"
    old = djctl.enqueue(Touch(str(out), "before-upgrade"))
    late = djctl.enqueue(Touch(str(out), "from-an-old-web-process"))
    engine = api.engine(db_url)
    with engine.begin() as conn:
        # As version 2 left them: no queue, and the migration not yet applied.
        conn.execute(text("UPDATE delayed_jobs SET queue = NULL WHERE id = :id"), {"id": old})
        conn.execute(text("DELETE FROM djctl_schema_migrations WHERE version = 3"))
    assert [m.version for m in migrations.upgrade(engine)] == [3]
    with engine.begin() as conn:
        stored = conn.execute(text("SELECT queue FROM delayed_jobs WHERE id = :id"), {"id": old}).scalar_one()
        assert stored == "default"
        # An enqueuer still running the old code writes no queue after the upgrade too.
        conn.execute(text("UPDATE delayed_jobs SET queue = NULL WHERE id = :id"), {"id": late})
    r = workoff(djctl_env, "--queues", "default")
    assert r.returncode == 0, r.stderr
    assert sorted(out.read_text().split()) == ["before-upgrade", "from-an-old-web-process"]
    assert count(db_url) == 0


def test_stats_and_clear_name_the_default_queue(db_url, djctl_env, tmp_path: Path):
    djctl.enqueue(Touch(str(tmp_path / "out"), "a"))
    djctl.enqueue(Touch(str(tmp_path / "out"), "b"), queue="mail")
    r = subprocess.run(djctl_cmd("stats"), env=djctl_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert [line.split()[0] for line in r.stdout.splitlines()[1:]] == ["default", "mail"]
    r = subprocess.run(djctl_cmd("clear", "--queue", "default"), env=djctl_env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert count(db_url) == 1 and count(db_url, "queue = 'mail'") == 1
