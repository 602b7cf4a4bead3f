"""Recurring jobs through the API on each database: schedule, unschedule, what is refused."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from djctl import api
from djctl.queue.schema import delayed_jobs
from djctl.schedules import schedule, schedules, unschedule
from djctl.worker.worker import Worker
from tests.jobs import FailFirst, Touch
from tests.support.rows import count, only_row
from tests.support.waiting import wait_for

UTC = timezone.utc


def nightly_cleanup() -> None:
    """A function scheduled by name."""


def quiet() -> Worker:
    return Worker(sleep_delay=0.05, log=lambda _line: None)


# -- acceptance 3: a run that raises does not stop the schedule -------------------------------------


def test_a_run_that_raises_is_recorded_and_the_next_period_still_runs(db_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    schedule(FailFirst(str(marker)), every=timedelta(seconds=1), key="flaky")
    first_due = only_row().run_at
    assert quiet().work_off() == (0, 1)
    row = only_row()
    assert row.failed_at is None and row.attempts == 0 and row.locked_by is None
    assert row.last_error.startswith("RuntimeError: the first run fails")
    assert row.run_at > first_due and row.last_run_at is not None
    wait_for(lambda: quiet().work_off() == (1, 0), message="the next period to run")
    assert marker.read_text() == "ran\n"
    row = only_row()
    assert row.last_error is None and row.failed_at is None


# -- acceptance 4: schedule is an upsert on its key --------------------------------------------------


def test_scheduling_twice_with_one_key_leaves_one_schedule_with_the_new_options(db_url: str, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    start = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert schedule(Touch(out, "a"), every=timedelta(hours=1), key="report", now=start) == "report"
    later = start + timedelta(minutes=20)
    schedule(Touch(out, "b"), every=timedelta(hours=1), key="report", queue="reports", priority=5, now=later)
    (info,) = schedules()
    assert (info.key, info.queue, info.priority, info.every) == ("report", "reports", 5, timedelta(hours=1))
    assert info.next_run == start  # same recurrence: the next run is kept
    assert '"b"' in only_row().handler
    schedule(Touch(out, "b"), cron="0 3 * * *", tz="Europe/Berlin", key="report", now=later)
    (info,) = schedules()
    assert (info.every, info.cron, info.tz, info.queue, info.priority) == (
        None, "0 3 * * *", "Europe/Berlin", "default", 0)
    assert info.next_run == datetime(2026, 5, 2, 1, 0, tzinfo=UTC)  # a changed recurrence starts afresh
    assert count(db_url) == 1


def test_the_default_key_is_stable_for_the_same_job(db_url: str, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    first = schedule(Touch(out, "a"), every=timedelta(minutes=5))
    assert schedule(Touch(out, "a"), every=timedelta(minutes=10)) == first
    assert first.startswith("Touch:")
    other = schedule(Touch(out, "b"), every=timedelta(minutes=5))
    assert other != first
    assert schedule(nightly_cleanup, cron="0 3 * * *") == "tests.integration.test_schedule:nightly_cleanup"
    assert [s.key for s in schedules()] == sorted([first, other, "tests.integration.test_schedule:nightly_cleanup"])
    assert count(db_url) == 3


def test_a_bound_method_can_be_scheduled_and_runs(db_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    key = schedule(Touch(str(out), "method").perform, every=timedelta(hours=1))
    assert key.startswith("Touch.perform:")
    assert quiet().work_off() == (1, 0)
    assert out.read_text() == "method\n"
    assert [s.job for s in schedules()] == ["Touch#perform"]


def test_a_schedule_edited_into_nonsense_shows_as_invalid(db_url: str) -> None:
    schedule(nightly_cleanup, cron="0 3 * * *", key="nightly")
    with api.engine().begin() as conn:
        conn.execute(delayed_jobs.update().values(cron="not a cron"))
    (info,) = schedules()
    assert not info.valid and info.describe() == "invalid: not a cron"


def test_concurrent_start_ups_agree_on_one_schedule(db_url: str, tmp_path: Path) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def start_up(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            schedule(Touch(str(tmp_path / "out"), "x"), every=timedelta(minutes=1), key="shared", priority=i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=start_up, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=30)
    assert errors == []
    assert count(db_url, "schedule_key = 'shared'") == 1


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(every=timedelta(hours=1), cron="0 3 * * *"), ValueError, "exactly one of every"),
        (dict(), ValueError, "exactly one of every"),
        (dict(every=timedelta(0)), ValueError, "positive"),
        (dict(cron="every day"), ValueError, "must have 5 fields"),
        (dict(cron="0 25 * * *"), ValueError, "invalid cron expression"),
        (dict(cron="0 3 * * *", tz="Europe/Atlantis"), ValueError, "unknown time zone"),
        (dict(every=timedelta(hours=1), key=""), ValueError, "key must be"),
    ],
)
def test_bad_schedules_are_refused_and_nothing_is_written(db_url: str, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        schedule(nightly_cleanup, **kwargs)
    assert count(db_url) == 0


def test_what_cannot_be_a_job_is_refused(db_url: str) -> None:
    with pytest.raises(TypeError, match="instance"):
        schedule(Touch, every=timedelta(hours=1))
    with pytest.raises(TypeError, match="module level"):
        schedule(lambda: None, every=timedelta(hours=1))
    assert count(db_url) == 0


def test_unschedule(db_url: str) -> None:
    key = schedule(nightly_cleanup, every=timedelta(hours=1))
    assert unschedule(key) is True
    assert unschedule(key) is False
    assert schedules() == []


# -- the CLI ------------------------------------------------------------------------------------------


