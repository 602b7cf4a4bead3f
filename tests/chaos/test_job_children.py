"""Issue 14, point 7 and acceptance 6: the processes a job starts — in its process group,
in a new session, double-forked into a new session — are gone after the job ends, after
it is stopped at max_run_time, and after ``djctl down``."""

from __future__ import annotations

import signal
import subprocess

import pytest

import djctl
from tests.chaos.conftest import CHAOS_SETTINGS, gone, kinds, started
from tests.chaos.harden_jobs import Offspring
from tests.support.app import running_app
from tests.support.commands import djctl_cmd


@pytest.fixture
def worker(djctl_env, tmp_path):
    """``djctl work`` with a short max_run_time; stopped (SIGTERM) at the end."""
    env = {**djctl_env, "DJ_APP": "tests.jobs,tests.chaos", "DJ_MAX_RUN_TIME": "3"}
    proc = subprocess.Popen(djctl_cmd("work"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield proc
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


@pytest.mark.parametrize("db_kind", kinds("sqlite", "postgresql"))
def test_a_jobs_children_are_gone_when_it_ends(worker, tmp_path):
    path = tmp_path / "pids.txt"
    djctl.enqueue(Offspring(str(path), seconds=1))
    gone(started(path), 15, "after the job returned")


@pytest.mark.parametrize("db_kind", kinds("sqlite", "postgresql"))
def test_a_jobs_children_are_gone_after_max_run_time(worker, tmp_path):
    path = tmp_path / "pids.txt"
    djctl.enqueue(Offspring(str(path), seconds=120))
    # max_run_time (3 s) + kill grace (2 s), far short of the job's 120 s.
    gone(started(path), 15, "after max_run_time")
    assert worker.poll() is None


@pytest.mark.parametrize("db_kind", kinds("sqlite", "postgresql"))
def test_a_jobs_children_are_gone_after_down(db_kind, request, tmp_path):
    # A grace period shorter than the job: the supervisor ends it with SIGKILL.
    app = next(running_app(request, tmp_path, **CHAOS_SETTINGS, DJ_GRACE_PERIOD="2", DJ_MAX_RUN_TIME="600"))
    try:
        app.run("up", "--formation", "worker=1")
        app.wait_up(1)
        path = tmp_path / "pids.txt"
        djctl.enqueue(Offspring(str(path), seconds=300))
        pids = started(path)
        app.run("down")
        gone(pids, 10, "after djctl down")
        assert app.ours() == []
    finally:
        app.kill_everything()
