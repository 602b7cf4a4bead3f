"""An operator's brakes on real processes: ``djctl pause`` holds a queue on every host
sharing the database (two supervisors on one PostgreSQL; one elsewhere) and outlives
``down``/``up``; ``djctl cancel`` stops a running job's executor at once while its
worker, keeping its pid, runs its other jobs."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

import djctl
from tests import jobs
from tests.support.app import App, running_app
from tests.support.rows import count, row
from tests.support.waiting import wait_for

DEADLINE = 60.0


@pytest.fixture
def hosts(db_kind, request, tmp_path):
    """Supervisors working every queue: two under different host names on PostgreSQL
    (one database, two "hosts"), one on SQLite and MariaDB."""
    names = ("alpha", "beta") if db_kind == "postgresql" else ("alpha",)
    apps = [App(tmp_path / n, request.getfixturevalue("djctl_env"), request.getfixturevalue("db_url"),
                procfile="worker: djctl work\n", DJ_HOSTNAME=n) for n in names]
    yield apps
    for a in apps:
        a.kill_everything()


@pytest.fixture
def app(request, tmp_path):
    yield from running_app(request, tmp_path)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def untouched(db_url: str, queue: str) -> int:
    """How many jobs of ``queue`` no worker has ever claimed."""
    return count(db_url, "queue = :q AND attempts = 0 AND locked_by IS NULL", q=queue)


def up(apps: list[App]) -> None:
    for a in apps:
        a.run("up", "--formation", "worker=2")
    for a in apps:
        a.wait_up(2)


def test_a_paused_queue_is_held_on_every_host_while_others_flow_and_stays_paused_across_down_up(
        hosts, db_url, engine, tmp_path):
    """Acceptance 1 (two hosts on PostgreSQL; one host on SQLite and MariaDB)."""
    out = tmp_path / "out"
    up(hosts)
    first, last = hosts[0], hosts[-1]
    running = djctl.enqueue(jobs.Touch(str(out), "long", seconds=1.0), queue="mail")
    wait_for(lambda: (row(engine, running) or {}).get("locked_by"), DEADLINE, message="the mail job to start")

    assert "Paused queue mail" in last.cli("pause", "mail").stdout
    held = djctl.enqueue_many([jobs.Touch(str(out), f"mail{i}") for i in range(10)], queue="mail")
    assert len(held) == 10  # enqueueing still works
    djctl.enqueue_many([jobs.Touch(str(out), f"other{i}") for i in range(10)])
    wait_for(lambda: {f"other{i}" for i in range(10)} | {"long"} <= set(lines(out)), DEADLINE,
             message="the other queue to flow, and the running mail job to finish")
    assert untouched(db_url, "mail") == 10, "no worker on any host claimed from the paused queue"
    assert "mail (paused)" in first.cli("stats").stdout
    assert "Paused: queue mail since " in first.cli("ps").stdout

    for a in hosts:
        a.cli("down")
    up(hosts)
    djctl.enqueue(jobs.Touch(str(out), "after-restart"))
    wait_for(lambda: "after-restart" in lines(out), DEADLINE, message="a job of another queue after up")
    assert untouched(db_url, "mail") == 10, "the pause outlived down/up"

    assert "Resumed queue mail" in first.cli("resume", "mail").stdout
    wait_for(lambda: count(db_url, "queue = 'mail'") == 0, DEADLINE, message="the backlog to drain")
    assert {f"mail{i}" for i in range(10)} <= set(lines(out))
    for a in hosts:
        a.cli("down")


def test_cancel_stops_a_running_job_at_once_and_its_worker_carries_on(app, db_url, engine, tmp_path):
    """Acceptance 2, on each database."""
    out = tmp_path / "out"
    stuck = djctl.enqueue(jobs.StuckInSyscall(str(out)))
    others = djctl.enqueue_many([jobs.Touch(str(out), f"after{i}") for i in range(3)], priority=1)
    with open(tmp_path / "worker.out", "w") as log:
        worker = app.popen("work", stdout=log, stderr=subprocess.STDOUT)
    try:
        started = wait_for(lambda: [ln for ln in lines(out) if ln.startswith("start ")], DEADLINE,
                           message="the stuck job to start")
        executor = psutil.Process(int(started[0].split()[1]))
        done = app.cli("cancel", str(stuck))
        cancelled_at = time.monotonic()
        assert done.stdout.startswith(f"Cancelled job {stuck}:"), done.stdout
        wait_for(lambda: _gone(executor), DEADLINE, message="the executor to be killed")
        print(f"executor gone {time.monotonic() - cancelled_at:.3f}s after djctl cancel returned")
        wait_for(lambda: all(row(engine, i) is None for i in others), DEADLINE,
                 message="the worker's other jobs to run and be recorded")
        assert worker.poll() is None, "the worker process lives on"
        r = row(engine, stuck)
        assert r is not None and r["failed_at"] is not None and r["locked_by"] is None and r["attempts"] == 1
        assert r["last_error"].startswith("Cancelled by ") and "(djctl cancel)" in r["last_error"]
        assert {f"after{i}" for i in range(3)} <= set(lines(out))
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(DEADLINE) == 0
    said = (tmp_path / "worker.out").read_text()
    assert f"Job StuckInSyscall (id={stuck}) CANCELLED: Cancelled by " in said
    assert f"pid:{worker.pid}" in said
    assert sum(ln.startswith("start ") for ln in lines(out)) == 1, "the cancelled job never ran again"
    assert row(engine, stuck)["failed_at"] is not None


def _gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
