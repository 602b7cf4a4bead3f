"""Issue 14, point 4 and acceptance 4: a 1 MiB argument queued behind a job that overruns
max_run_time does not block the worker. The job in hand is stopped at its max_run_time,
not when it would have ended; the worker answers SIGTERM meanwhile; no job runs twice.

The deadlines below are far shorter than the overrunning job (120 s): a worker blocked in
a write to its executor would miss them by a minute, not by a noisy machine's second.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text

import djctl
from djctl import api
from tests.chaos.conftest import kinds
from tests.chaos.harden_jobs import Big, Overrun
from tests.support.commands import djctl_cmd
from tests.support.rows import count, locked
from tests.support.waiting import wait_for

MIB = 1 << 20


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def start_worker(djctl_env: dict, tmp_path: Path, max_run_time: float) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "worker.log"
    env = {**djctl_env, "DJ_APP": "tests.jobs,tests.chaos", "DJ_MAX_RUN_TIME": str(max_run_time)}
    proc = subprocess.Popen(djctl_cmd("work"), env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return proc, log


def queue_big_behind_overrun(path: Path) -> None:
    djctl.enqueue(Overrun(str(path), "slow", seconds=120), priority=0)
    djctl.enqueue(Big(str(path), "big", "x" * MIB), priority=1)
    wait_for(lambda: "start slow" in lines(path), 30, message="the slow job running")


@pytest.mark.parametrize("db_kind", kinds("sqlite", "postgresql", "mysql"))
def test_a_big_argument_behind_an_overrunning_job_is_stopped_at_max_run_time(db_url, djctl_env, tmp_path):
    path = tmp_path / "runs.txt"
    worker, log = start_worker(djctl_env, tmp_path, max_run_time=3)
    try:
        queue_big_behind_overrun(path)
        # max_run_time (3 s) + kill grace (2 s), with room for a busy machine.
        wait_for(lambda: "big 1048576" in lines(path), 15, message="the slow job stopped and the big one run")
        wait_for(lambda: count(db_url) == 1, 10, message="the big job recorded")
        with api.engine(db_url).connect() as conn:
            error = conn.execute(text("SELECT last_error FROM delayed_jobs")).scalar()
        assert "max_run_time" in error
        assert lines(path).count("start slow") == 1 and "end slow" not in lines(path)
        assert lines(path).count("big 1048576") == 1
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert worker.returncode == 0, log.read_text()
    assert locked(db_url) == []


@pytest.mark.parametrize("db_kind", kinds("sqlite", "postgresql"))
def test_the_worker_answers_sigterm_while_a_big_argument_waits(db_url, djctl_env, tmp_path):
    path = tmp_path / "runs.txt"
    worker, log = start_worker(djctl_env, tmp_path, max_run_time=8)
    try:
        queue_big_behind_overrun(path)
        worker.send_signal(signal.SIGTERM)
        wait_for(lambda: "Exiting..." in log.read_text(), 5, message="the worker saying it stops")
        # It stops the job in hand at its max_run_time and gives the big one back unrun.
        worker.wait(8 + 2 + 10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, log.read_text()
    assert "big 1048576" not in lines(path) and lines(path).count("start slow") == 1
    assert locked(db_url) == []
    with api.engine(db_url).connect() as conn:
        attempts = conn.execute(text("SELECT attempts FROM delayed_jobs WHERE handler LIKE '%Big%'")).scalar()
    assert attempts == 0
