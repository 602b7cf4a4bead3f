"""Issue 14, point 9 and acceptance 8: a SQLite file deleted or replaced under a running
worker. The worker says so within one maintenance pass and stops (exit 1, one line)
rather than run on a file nobody else sees; while it runs, nothing creates a new empty
file at that path; once it is gone, the next worker creates the file and the jobs
enqueued there run.

The rule a user sees: djctl creates a missing SQLite file on first use, unless workers
of that path are running on this host — then the file was deleted or moved under them,
and the call fails naming the path and the pids.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

import djctl
from djctl.queue import engines as store
from tests.jobs import Touch
from tests.support.commands import djctl_cmd
from tests.support.waiting import wait_for

pytestmark = pytest.mark.parametrize("db_kind", ["sqlite"])


def sqlite_file(db_url: str) -> Path:
    path = store.sqlite_path(store.normalize_url(db_url))
    assert path is not None
    return path


def delete(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    # max_run_time 20 s: a maintenance pass every second (max_run_time / 20).
    return subprocess.Popen(djctl_cmd("work"), env={**env, "DJ_MAX_RUN_TIME": "20"}, stdout=log.open("a"),
                            stderr=subprocess.STDOUT)


def ran(out: Path, key: str) -> bool:
    return out.exists() and key in out.read_text().split()


def test_a_deleted_file_stops_the_worker_and_is_not_recreated_under_it(db_url, djctl_env, tmp_path):
    path, out, log = sqlite_file(db_url), tmp_path / "out.txt", tmp_path / "worker.log"
    worker = start_worker(djctl_env, log)
    try:
        djctl.enqueue(Touch(str(out), "before"))
        wait_for(lambda: ran(out, "before"), 30, message="the worker running jobs")
        worker.send_signal(signal.SIGSTOP)  # alive, and not yet past its next maintenance pass
        delete(path)

        # A new process may not create an empty file the worker does not use...
        code = f"import djctl; from tests.jobs import Touch; djctl.enqueue(Touch({str(out)!r}, 'lost'))"
        other = subprocess.run([sys.executable, "-c", code], env=djctl_env, capture_output=True, text=True)
        assert other.returncode != 0
        assert f"SQLite database {path} does not exist, but workers of that path are running" in other.stderr
        assert f"(pids {worker.pid})" in other.stderr
        # ...nor may this one, whose pooled connections still hold the deleted file.
        with pytest.raises(DBAPIError, match="no longer exists"):
            djctl.enqueue(Touch(str(out), "lost"))
        assert not path.exists()
    finally:
        worker.send_signal(signal.SIGCONT)
    assert worker.wait(15) == 1
    said = [line for line in log.read_text().splitlines() if "was deleted while this worker used it" in line]
    assert said and said[0].startswith("[Worker(") and f"SQLite database {path} was deleted" in said[0]
    assert f"djctl: SQLite database {path} was deleted while this worker used it; stopping" in log.read_text()
    assert not path.exists()

    # The next worker creates the file; what is enqueued now runs.
    worker = start_worker(djctl_env, log)
    try:
        # Its first connection creates the file, its schema follows: enqueue once it says it started.
        wait_for(lambda: log.read_text().count("*** Starting job worker") == 2, 30,
                 message="the restarted worker creating the file")
        assert path.exists()
        djctl.enqueue(Touch(str(out), "after"))
        wait_for(lambda: ran(out, "after"), 30, message="a job enqueued in the new file run")
        assert "lost" not in out.read_text().split()
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0


def test_a_replaced_file_stops_the_worker_and_enqueues_reach_the_new_one(db_url, djctl_env, tmp_path):
    path, out, log = sqlite_file(db_url), tmp_path / "out.txt", tmp_path / "worker.log"
    fresh = tmp_path / "fresh.sqlite3"
    subprocess.run(djctl_cmd("db", "upgrade"), env={**djctl_env, "DJ_DATABASE_URL": f"sqlite:///{fresh}"},
                   check=True, capture_output=True)
    worker = start_worker(djctl_env, log)
    try:
        djctl.enqueue(Touch(str(out), "before"))
        wait_for(lambda: ran(out, "before"), 30, message="the worker running jobs")
        delete(path)
        fresh.rename(path)
        assert worker.wait(15) == 1
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert f"SQLite database {path} was replaced by another file while this worker used it" in log.read_text()

    djctl.enqueue(Touch(str(out), "after"))  # into the new file, not the old inode
    worker = start_worker(djctl_env, log)
    try:
        wait_for(lambda: ran(out, "after"), 30, message="a job enqueued in the new file run")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0


def test_under_the_supervisor_the_log_says_so_and_the_restart_uses_the_new_file(db_kind, app, tmp_path):
    path, out = sqlite_file(app.db_url), tmp_path / "out.txt"
    app.env["DJ_MAX_RUN_TIME"] = "20"
    app.run("up", "--formation", "worker=1")
    first = app.wait_up(1)
    djctl.enqueue(Touch(str(out), "before"))
    wait_for(lambda: ran(out, "before"), 30, message="the worker running jobs")
    delete(path)

    said = wait_for(lambda: app.log_has(r"\[worker\.1\]: .*SQLite database .* was deleted while this worker used it"),
                    15, message="the worker saying its file was deleted")
    assert str(path) in said[0]
    wait_for(lambda: app.up_pids() and app.up_pids() != first and path.exists(), 30,
             message="the worker restarted on a new file")
    djctl.enqueue(Touch(str(out), "after"))
    wait_for(lambda: ran(out, "after"), 30, message="a job enqueued in the new file run")
    app.cli("down")
    assert app.ours() == []
