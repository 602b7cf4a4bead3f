"""When recurring jobs run next (every / cron, across daylight saving), and what becomes of them when a run goes wrong."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text, update

from djctl import api
from djctl.queue import claims as claim
from djctl.queue.claims import ClaimedJob, Claims
from djctl.worker import identity
from djctl.recurrence import FALLBACK, Recurrence, next_run
from djctl.schedules import schedule
from djctl.queue.schema import delayed_jobs
from djctl.worker.worker import Worker
from tests.jobs import Touch

UTC = timezone.utc


def utc(*args: int) -> datetime:
    return datetime(*args)


def fires(rec: Recurrence, start: datetime, n: int) -> list[datetime]:
    """The next ``n`` instants, each evaluated with the clock set to the previous one (naive UTC)."""
    out, now = [], start
    for _ in range(n):
        now = rec.next_run(None, now)
        out.append(now)
    return out


def recurring(run_at: datetime, reoccur_in: int | None = None, cron: str | None = None) -> ClaimedJob:
    return ClaimedJob(1, "{}", 1, 0, run_at, None, reoccur_in, cron)


# -- every ---------------------------------------------------------------------


def test_every_counts_periods_from_the_run_that_ended_not_from_when_it_finished() -> None:
    job = recurring(utc(2026, 1, 1, 12, 0, 0), reoccur_in=60)
    assert next_run(job, utc(2026, 1, 1, 12, 0, 7)) == utc(2026, 1, 1, 12, 1, 0)


def test_every_skips_the_periods_missed_while_nothing_ran() -> None:
    job = recurring(utc(2026, 1, 1, 12, 0, 0), reoccur_in=60)
    assert next_run(job, utc(2026, 1, 1, 15, 30, 20)) == utc(2026, 1, 1, 15, 31, 0)


def test_every_on_a_period_boundary_moves_to_the_next_one() -> None:
    job = recurring(utc(2026, 1, 1, 12, 0, 0), reoccur_in=60)
    assert next_run(job, utc(2026, 1, 1, 12, 1, 0)) == utc(2026, 1, 1, 12, 2, 0)


def test_every_never_repeats_a_period_when_a_clock_is_behind() -> None:
    job = recurring(utc(2026, 1, 1, 12, 0, 0), reoccur_in=60)
    assert next_run(job, utc(2026, 1, 1, 11, 59, 58)) == utc(2026, 1, 1, 12, 1, 0)


def test_a_new_every_schedule_runs_at_once() -> None:
    now = utc(2026, 1, 1, 12, 0, 0)
    assert Recurrence.of(every=timedelta(hours=3)).first_run(now) == now


# -- cron and daylight saving ---------------------------------------------------------


def test_cron_is_utc_unless_told_otherwise() -> None:
    rec = Recurrence.of(cron="0 3 * * *")
    assert rec.columns() == {"reoccur_in": None, "cron": "0 3 * * * UTC"}
    assert fires(rec, utc(2026, 1, 1, 12, 0), 2) == [utc(2026, 1, 2, 3, 0), utc(2026, 1, 3, 3, 0)]


def test_cron_runs_at_wall_clock_time_in_its_zone() -> None:
    rec = Recurrence.of(cron="0 9 * * 1-5", tz="America/New_York")
    # Fri 2026-01-09 .. Tue 2026-01-13: weekdays at 09:00 EST = 14:00 UTC.
    assert fires(rec, utc(2026, 1, 9, 12, 0), 3) == [
        utc(2026, 1, 9, 14, 0), utc(2026, 1, 12, 14, 0), utc(2026, 1, 13, 14, 0),
    ]


def test_a_time_the_clocks_skip_fires_once_at_the_jump_berlin() -> None:
    # 2025-03-30: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 does not exist.
    rec = Recurrence.of(cron="30 2 * * *", tz="Europe/Berlin")
    assert fires(rec, utc(2025, 3, 28, 12, 0), 4) == [
        utc(2025, 3, 29, 1, 30),  # 02:30 CET
        utc(2025, 3, 30, 1, 0),  # the jump, 03:00 CEST
        utc(2025, 3, 31, 0, 30),  # 02:30 CEST
        utc(2025, 4, 1, 0, 30),
    ]


def test_a_time_that_occurs_twice_fires_once_berlin() -> None:
    # 2025-10-26: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 happens at 00:30 and 01:30 UTC.
    rec = Recurrence.of(cron="30 2 * * *", tz="Europe/Berlin")
    assert fires(rec, utc(2025, 10, 25, 12, 0), 3) == [
        utc(2025, 10, 26, 0, 30),  # 02:30 CEST, the first 02:30
        utc(2025, 10, 27, 1, 30),  # 02:30 CET the next day; never 01:30 UTC on the 26th
        utc(2025, 10, 28, 1, 30),
    ]


def test_during_the_repeated_hour_a_fixed_time_waits_for_the_next_day() -> None:
    rec = Recurrence.of(cron="30 2 * * *", tz="Europe/Berlin")
    # 01:10 UTC is 02:10 CET, in the second pass of the repeated hour.
    assert rec.next_run(None, utc(2025, 10, 26, 1, 10)) == utc(2025, 10, 27, 1, 30)


def test_daylight_saving_new_york() -> None:
    # 2025-03-09: 02:00 EST becomes 03:00 EDT (07:00 UTC); 2025-11-02: 02:00 EDT becomes 01:00 EST.
    spring = Recurrence.of(cron="30 2 * * *", tz="America/New_York")
    assert fires(spring, utc(2025, 3, 8, 0, 0), 3) == [
        utc(2025, 3, 8, 7, 30), utc(2025, 3, 9, 7, 0), utc(2025, 3, 10, 6, 30),
    ]
    fall = Recurrence.of(cron="30 1 * * *", tz="America/New_York")
    assert fires(fall, utc(2025, 11, 1, 12, 0), 3) == [
        utc(2025, 11, 2, 5, 30), utc(2025, 11, 3, 6, 30), utc(2025, 11, 4, 6, 30),
    ]


def test_a_wildcard_schedule_follows_elapsed_time_through_both_changes() -> None:
    rec = Recurrence.of(cron="*/30 * * * *", tz="Europe/Berlin")
    fall = fires(rec, utc(2025, 10, 25, 23, 10), 8)
    assert fall == [utc(2025, 10, 25, 23, 30) + timedelta(minutes=30 * i) for i in range(8)]
    spring = fires(rec, utc(2025, 3, 29, 23, 40), 6)
    assert spring == [utc(2025, 3, 30, 0, 0) + timedelta(minutes=30 * i) for i in range(6)]


def test_an_hourly_schedule_runs_every_real_hour_through_fall_back() -> None:
    rec = Recurrence.of(cron="@hourly", tz="Europe/Berlin")
    assert fires(rec, utc(2025, 10, 25, 22, 30), 5) == [utc(2025, 10, 25, 23, 0) + timedelta(hours=i) for i in range(5)]


def test_a_row_reads_back_the_zone_it_was_written_with() -> None:
    for rec in (Recurrence.of(cron="@hourly", tz="Europe/Berlin"), Recurrence.of(cron="30  2 * * *", tz="Asia/Tokyo"),
                Recurrence.of(every=timedelta(minutes=90))):
        cols = rec.columns()
        assert Recurrence.from_row(cols["reoccur_in"], cols["cron"]) == rec
    assert Recurrence.of(cron="30  2 * * *", tz="Asia/Tokyo").columns()["cron"] == "30 2 * * * Asia/Tokyo"
    assert Recurrence.from_row(None, "0 3 * * *") == Recurrence(cron="0 3 * * *", tz="UTC")


# -- refusing what cannot be a schedule --------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "exactly one of every"),
        (dict(every=timedelta(hours=1), cron="0 3 * * *"), "exactly one of every"),
        (dict(every=timedelta(0)), "positive"),
        (dict(every=timedelta(seconds=-5)), "positive"),
        (dict(every=timedelta(seconds=1.5)), "whole number of seconds"),
        (dict(every=3600), "must be a timedelta"),
        (dict(every=timedelta(hours=1), tz="Europe/Berlin"), "cron schedules only"),
        (dict(cron="61 * * * *"), "invalid cron expression '61 * * * *'"),
        (dict(cron="0 3 * *"), "must have 5 fields"),
        (dict(cron="0 0 3 * * *"), "must have 5 fields"),
        (dict(cron="0 0 30 2 *"), "never fires"),
        (dict(cron="0 3 * * *", tz="Mars/Olympus_Mons"), "unknown time zone 'Mars/Olympus_Mons'"),
        (dict(cron="0 3 * * *", tz="../../etc/passwd"), "unknown time zone"),
    ],
)
def test_unusable_recurrences_are_refused_with_a_clear_message(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        Recurrence.of(**kwargs)


def test_a_row_edited_into_nonsense_is_retried_later_rather_than_crashing_its_worker() -> None:
    now = utc(2026, 1, 1, 12, 0)
    assert next_run(recurring(now, cron="not a cron"), now) == now + FALLBACK
    assert next_run(recurring(now, cron="0 3 * * * Nowhere/Land"), now) == now + FALLBACK
    assert next_run(recurring(now, reoccur_in=0), now) == now + FALLBACK


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
