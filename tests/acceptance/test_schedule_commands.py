"""Recurring jobs end to end: real worker processes and the schedules / unschedule / retry / clear commands."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

import djctl
from djctl import api
from djctl.queue.schema import delayed_jobs
from djctl.schedules import schedule, schedules
from djctl.worker.worker import Worker
from tests.jobs import FailFirst, HangFirst, Touch
from tests.support.commands import djctl_cmd
from tests.support.rows import count, only_row
from tests.support.waiting import wait_for

UTC = timezone.utc


@djctl.job
@dataclass
class StampPeriod:
    """Records, for each run, the period it was claimed for (its row's run_at) and when it ran."""

    path: str
    key: str

    def perform(self) -> None:
        with api.engine().connect().execution_options(sqlite_read=True) as conn:
            due = conn.execute(
                select(delayed_jobs.c.run_at).where(delayed_jobs.c.schedule_key == self.key)
            ).scalar_one()
        with open(self.path, "a") as f:
            f.write(f"{due.isoformat()} {time.time():.6f}\n")


def nightly_cleanup() -> None:
    """A function scheduled by name."""


def quiet() -> Worker:
    return Worker(sleep_delay=0.05, log=lambda _line: None)


def start_workers(n: int, env: dict, tmp_path: Path) -> tuple[list[subprocess.Popen], list[Path]]:
    logs = [tmp_path / f"worker{i}.log" for i in range(n)]
    procs = []
    for log in logs:
        with open(log, "w") as out:
            procs.append(subprocess.Popen(djctl_cmd("work", "--sleep-delay", "0.05"), env=env,
                                          stdout=out, stderr=subprocess.STDOUT))
    wait_for(lambda: all("*** Starting job worker" in log.read_text() for log in logs), timeout=30,
             message=f"{n} workers to start")
    return procs, logs


def stop_workers(procs: list[subprocess.Popen]) -> list[int]:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    return [p.wait(timeout=30) for p in procs]


# -- acceptance 1: every=1s, three workers, 5 s ---------------------------------------------------


@pytest.mark.serial  # a wall-clock window: run alone, after the parallel part of the suite
def test_every_second_with_three_workers_runs_once_per_period(db_url: str, djctl_env: dict, tmp_path: Path) -> None:
    env = dict(djctl_env, DJ_ALLOW=__name__)
    procs, logs = start_workers(3, env, tmp_path)
    runs = tmp_path / "runs.txt"
    try:
        schedule(StampPeriod(str(runs), "tick"), every=timedelta(seconds=1), key="tick")
        anchor = schedules()[0].next_run.replace(tzinfo=None)
        # The acceptance window itself: five seconds of three workers competing for the schedule.
        time.sleep(max(0.0, (anchor + timedelta(seconds=5) - api.utc_naive(api.now())).total_seconds()))
    finally:
        codes = stop_workers(procs)
    assert codes == [0, 0, 0]
    lines = runs.read_text().split("\n")[:-1]
    periods = [datetime.fromisoformat(line.split()[0]) for line in lines]
    ran_at = [datetime.fromtimestamp(float(line.split()[1]), UTC).replace(tzinfo=None) for line in lines]
    assert 4 <= len(periods) <= 6, lines
    assert len(set(periods)) == len(periods), f"a period ran twice: {lines}"
    for due, at in zip(periods, ran_at, strict=False):
        assert (due - anchor) % timedelta(seconds=1) == timedelta(0), f"{due} is not a period boundary"
        assert at >= due
    assert periods == sorted(periods)
    text = "".join(log.read_text() for log in logs)
    assert text.count("COMPLETED") == len(periods) and "FAILED" not in text
    assert count(db_url, "schedule_key = 'tick' AND failed_at IS NULL AND locked_by IS NULL") == 1


# -- the CLI ------------------------------------------------------------------------------------------


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(djctl_cmd(*args), env=env, capture_output=True, text=True, timeout=60)


def test_djctl_schedules_lists_each_schedule_with_its_next_and_last_run(db_url: str, djctl_env: dict,
                                                                         tmp_path: Path) -> None:
    assert run(djctl_env, "schedules").stdout == "(no schedules)\n"
    schedule(FailFirst(str(tmp_path / "m")), every=timedelta(hours=1, minutes=30), key="flaky", queue="ops")
    schedule(nightly_cleanup, cron="30 2 * * *", tz="Europe/Berlin", priority=3)
    assert quiet().work_off() == (0, 1)
    result = run(djctl_env, "schedules")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["key", "job", "schedule", "queue", "priority", "next", "run", "(UTC)", "last", "run",
                              "(UTC)", "last", "error"]
    assert len(rows) == 2
    flaky, nightly = rows
    info = {s.key: s for s in schedules()}
    assert flaky.split()[:6] == ["flaky", "FailFirst", "every", "1h30m", "ops", "0"]
    assert info["flaky"].next_run.strftime("%Y-%m-%d %H:%M:%S") in flaky
    assert info["flaky"].last_run_at.strftime("%Y-%m-%d %H:%M:%S") in flaky
    assert flaky.endswith("RuntimeError: the first run fails")  # the first line only
    next_nightly = info["tests.acceptance.test_schedule_commands:nightly_cleanup"].next_run
    assert next_nightly.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") == "02:30"
    assert nightly.split() == ["tests.acceptance.test_schedule_commands:nightly_cleanup", "nightly_cleanup", "cron",
                               "30", "2", "*", "*", "*", "Europe/Berlin", "default", "3",
                               *next_nightly.strftime("%Y-%m-%d %H:%M:%S").split(), "never"]


def test_djctl_unschedule(db_url: str, djctl_env: dict) -> None:
    schedule(nightly_cleanup, every=timedelta(hours=1), key="hourly")
    result = run(djctl_env, "unschedule", "hourly")
    assert (result.returncode, result.stdout) == (0, "Unscheduled hourly.\n")
    assert count(db_url) == 0
    result = run(djctl_env, "unschedule", "hourly")
    assert result.returncode == 1
    assert result.stderr == "djctl: no schedule with key 'hourly'; djctl schedules lists them\n"


def test_djctl_retry_runs_a_schedule_now_and_it_keeps_recurring(db_url: str, djctl_env: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    schedule(Touch(str(out), "run"), every=timedelta(hours=1), key="hourly",
             now=api.now() + timedelta(minutes=30))
    assert quiet().work_off() == (0, 0)  # not due for half an hour
    job_id = only_row().id
    result = run(djctl_env, "retry", str(job_id))
    assert result.returncode == 0, result.stderr
    assert quiet().work_off() == (1, 0)
    assert out.read_text() == "run\n"
    row = only_row()
    assert row.run_at > api.utc_naive(api.now()) + timedelta(minutes=59) and row.failed_at is None


def test_djctl_clear_removes_schedules_with_the_other_jobs(db_url: str, djctl_env: dict) -> None:
    schedule(nightly_cleanup, every=timedelta(hours=1), key="a", queue="ops")
    schedule(nightly_cleanup, every=timedelta(hours=1), key="b")
    assert run(djctl_env, "clear", "--queue", "ops").stdout == "Deleted 1 recurring schedule from queue ops.\n"
    assert [s.key for s in schedules()] == ["b"]


# -- a worker killed under a recurring job -----------------------------------------------------------


def test_a_recurring_job_whose_worker_is_killed_runs_again_and_keeps_its_schedule(db_url: str, djctl_env: dict,
                                                                                 tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    schedule(HangFirst(str(marker)), every=timedelta(hours=1), key="hang")
    (proc,), _ = start_workers(1, dict(djctl_env, DJ_ALLOW=__name__), tmp_path)
    try:
        wait_for(marker.exists, message="the first run to start")
        due = only_row().run_at
        assert only_row().locked_by.endswith(f"pid:{proc.pid}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        stop_workers([proc])
    # Another worker on this host finds the claim of a dead process and gives it back.
    wait_for(lambda: quiet().work_off() == (1, 0), message="the interrupted period to run again")
    assert marker.read_text() == "ran\n"
    row = only_row()
    assert row.failed_at is None and row.attempts == 0 and row.locked_by is None
    assert row.run_at == due + timedelta(hours=1)
