"""Recurring jobs on each database: cron across daylight saving, and what becomes of a run that goes wrong."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text, update

from djctl import api
from djctl.queue import claims as claim
from djctl.queue.claims import Claims
from djctl.queue.schema import delayed_jobs
from djctl.recurrence import next_run
from djctl.schedules import schedule
from djctl.worker import identity
from djctl.worker.worker import Worker
from tests.jobs import Touch

UTC = timezone.utc


def utc(*args: int) -> datetime:
    return datetime(*args)


# -- through the database, with an injected clock -----------------------------------------------


def test_a_cron_schedule_fires_at_the_right_instants_across_dst_on_each_database(db_url: str, tmp_path) -> None:
    start = datetime(2025, 10, 24, 12, 0, tzinfo=UTC)
    schedule(Touch(str(tmp_path / "out"), "x"), cron="30 2 * * *", tz="Europe/Berlin", key="nightly", now=start)
    eng = api.engine()
    claims = Claims(eng.dialect.name, identity.format("test", 1))
    seen = []
    for _ in range(4):
        with eng.begin() as conn:
            due = conn.execute(select(delayed_jobs.c.run_at)).scalar_one()
            (job,) = claims.claim(conn, 1, due)  # the clock reads exactly the due time
            assert job.run_at == due
            ended = due + timedelta(seconds=2)
            assert claims.reschedule(conn, job.id, next_run(job, ended), ended, None)
        seen.append(due)
    assert seen == [
        utc(2025, 10, 25, 0, 30),  # 02:30 CEST
        utc(2025, 10, 26, 0, 30),  # the first 02:30 of the fall-back night, and only that one
        utc(2025, 10, 27, 1, 30),  # 02:30 CET
        utc(2025, 10, 28, 1, 30),
    ]


# -- a recurring job never ends failed ---------------------------------------------------------------


def _insert_locked(conn, locked_by: str, attempts: int, **cols) -> int:
    now = api.utc_naive(api.now())
    row = dict(handler='{"job":"tests.jobs:Fail","state":{}}', run_at=now - timedelta(seconds=1), locked_at=now,
               locked_by=locked_by, attempts=attempts, created_at=now, updated_at=now, **cols)
    return conn.execute(delayed_jobs.insert().values(row).returning(delayed_jobs.c.id)).scalar_one()


@pytest.mark.parametrize("how", ["dead", "expired"])
def test_released_claims_fail_one_off_jobs_but_never_recurring_ones(db_url: str, how: str) -> None:
    dead = identity.format("gone", 999999)
    eng = api.engine()
    now = api.utc_naive(api.now())
    with eng.begin() as conn:
        one_off = _insert_locked(conn, dead, attempts=3)
        every = _insert_locked(conn, dead, attempts=3, reoccur_in=60, schedule_key="every")
        cron = _insert_locked(conn, dead, attempts=3, cron="0 3 * * * UTC", schedule_key="cron")
        if how == "dead":
            assert claim.release_dead(conn, [dead], "worker process died", now, max_attempts=3) == 3
        else:
            assert claim.release_expired(conn, timedelta(seconds=1), now + timedelta(hours=1), max_attempts=3) == 3
    with eng.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(delayed_jobs))}
    assert rows[one_off].failed_at is not None
    for job_id in (every, cron):
        assert rows[job_id].failed_at is None and rows[job_id].locked_by is None


def test_a_recurring_job_whose_attempts_were_spent_by_dying_workers_moves_on_to_its_next_period(db_url: str) -> None:
    eng = api.engine()
    with eng.begin() as conn:
        job_id = _insert_locked(conn, identity.format("gone", 999999), attempts=2, reoccur_in=3600,
                                schedule_key="hourly")
        claim.release_dead(conn, [identity.format("gone", 999999)], "worker process died",
                           api.utc_naive(api.now()), max_attempts=2)
    before = api.utc_naive(api.now())
    lines: list[str] = []
    assert Worker(max_attempts=2, log=lines.append).work_off() == (0, 1)
    with eng.connect() as conn:
        row = conn.execute(select(delayed_jobs).where(delayed_jobs.c.id == job_id)).one()
    assert row.failed_at is None and row.locked_by is None and row.attempts == 0
    assert "attempts exhausted" in row.last_error
    assert row.run_at > before + timedelta(minutes=59)  # the next period, not this one again


def test_a_recurring_handler_that_does_not_decode_keeps_its_schedule_and_shows_why(db_url: str, tmp_path) -> None:
    schedule(Touch(str(tmp_path / "out"), "x"), every=timedelta(hours=1), key="broken")
    eng = api.engine()
    with eng.begin() as conn:
        conn.execute(update(delayed_jobs).values(handler='{"job":"os:system","state":{}}'))
    lines: list[str] = []
    assert Worker(log=lines.append).work_off() == (0, 1)
    with eng.connect() as conn:
        row = conn.execute(select(delayed_jobs)).one()
    assert row.failed_at is None and row.attempts == 0 and row.locked_by is None
    assert "HandlerError" in row.last_error and "os" in row.last_error
    assert row.run_at > api.utc_naive(api.now()) + timedelta(minutes=59)
    assert not (tmp_path / "out").exists()
    with eng.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM delayed_jobs")).scalar_one() == 1
