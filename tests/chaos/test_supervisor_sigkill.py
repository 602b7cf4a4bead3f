"""Issue 8, acceptance 2: the supervisor SIGKILLed mid-run leaves no orphan and loses no job;
``djctl up`` again finishes the work."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

import djctl
from tests.chaos import Record
from tests.chaos.conftest import kinds, runs
from tests.support.rows import count, locked
from tests.support.waiting import wait_for

TOTAL = 600


def _alive(p: psutil.Process) -> bool:
    """Still running (``is_running`` also tells a reused pid from the process we knew)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("db_kind", kinds("sqlite", "postgresql"))
def test_a_sigkilled_supervisor_leaves_no_orphan_and_up_again_finishes_every_job(db_kind, app, tmp_path):
    path = tmp_path / "runs.txt"
    app.run("up", "--formation", "worker=4")
    workers = app.wait_up(4)
    sup = app.supervisor_pid()
    family = [psutil.Process(pid) for pid in (sup, *workers.values())]
    family += [c for p in family[1:] for c in p.children()]  # the executors
    djctl.enqueue_many([Record(str(path), str(i), seconds=0.005) for i in range(TOTAL)])
    wait_for(lambda: 0 < sum(runs(path).values()) and count(app.db_url) < TOTAL - 50, 60,
             message="the workers to be well into the jobs")

    os.kill(sup, signal.SIGKILL)
    # Each worker hears of it from the kernel (parent-death signal), finishes the job in
    # hand as on SIGTERM, gives back its other claims and exits; its executor goes with it.
    wait_for(lambda: app.ours() == [] and not any(_alive(p) for p in family), 30,
             message="every process of the formation to exit")
    assert locked(app.db_url) == [], "a worker left a claim behind"
    left = count(app.db_url)
    assert 0 < left < TOTAL  # the kill landed mid-run

    # The pid file is still there, but nobody holds its lock: up starts afresh.
    assert (app.state / "djctl.pid").exists()
    out = app.run("up").stdout
    assert out.strip().endswith("running worker=4")
    app.wait_up(4)
    wait_for(lambda: count(app.db_url) == 0, 60, interval=0.1, message="every job worked off after up")
    seen = runs(path)
    assert set(seen) == {str(i) for i in range(TOTAL)}
    # The workers stopped gracefully: not even the jobs in hand ran twice.
    assert [k for k, n in seen.items() if n > 1] == []
    app.cli("down")
    assert app.ours() == []
