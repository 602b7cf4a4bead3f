"""Pausing queues and cancelling jobs on every database: what the claim then takes, what
each action records, and what it refuses (changing nothing)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import update

import djctl
from djctl import api
from djctl.queue import admin
from djctl.queue.admin import EVERY, Refusal
from djctl.queue.claims import Claims, Filter
from djctl.queue.schema import delayed_jobs
from djctl.queue.stats import EVERY_QUEUE, is_paused, paused_queues
from tests.jobs import Fail
from tests.support.rows import count, row, utcnow

ME = "host:here pid:1"


def claim(engine, n: int = 100, queues: tuple[str, ...] | None = None, name: str = ME) -> list[int]:
    c = Claims(engine.dialect.name, name, Filter(queues))
    with engine.begin() as conn:
        return sorted(j.id for j in c.claim(conn, n, utcnow()))


def paused(engine) -> set[str]:
    with engine.connect().execution_options(sqlite_read=True) as conn:
        return set(paused_queues(conn))


def test_no_worker_claims_from_a_paused_queue_others_flow_and_enqueue_still_works(engine) -> None:
    mail = djctl.enqueue(Fail(), queue="mail")
    default = djctl.enqueue(Fail())
    assert admin.pause(engine, ["mail"], "tester").changed == ("mail",)
    later = djctl.enqueue(Fail(), queue="mail")  # enqueueing into a paused queue works
    assert claim(engine) == [default]
    assert claim(engine, queues=("mail",)) == []
    assert admin.resume(engine, ["mail"]).changed == ("mail",)
    assert claim(engine, queues=("mail",)) == [mail, later]


def test_pausing_the_default_queue_holds_its_jobs_stored_without_a_queue_too(engine) -> None:
    named, legacy = djctl.enqueue(Fail()), djctl.enqueue(Fail())
    with engine.begin() as conn:
        conn.execute(update(delayed_jobs).where(delayed_jobs.c.id == legacy).values(queue=None))
    other = djctl.enqueue(Fail(), queue="other")
    assert admin.pause(engine, [None], "tester").changed == ("default",)
    assert claim(engine) == [other]
    admin.resume(engine, ["default"])
    assert claim(engine) == [named, legacy]


def test_pause_all_holds_every_queue_even_one_not_yet_named(engine) -> None:
    djctl.enqueue(Fail(), queue="mail")
    assert admin.pause(engine, EVERY, "tester").changed == (EVERY_QUEUE,)
    new = djctl.enqueue(Fail(), queue="brand-new")
    assert claim(engine) == []
    with engine.connect() as conn:
        assert is_paused(paused_queues(conn), "brand-new")
    assert admin.resume(engine, EVERY).changed == (EVERY_QUEUE,)
    assert new in claim(engine)


def test_pause_refuses_a_queue_no_job_has_used_and_changes_nothing(engine) -> None:
    djctl.enqueue(Fail(), queue="mail")
    done = admin.pause(engine, ["mail", "mial"], "tester")
    assert (done.changed, done.unknown) == ((), ("mial",))
    assert paused(engine) == set()
    assert admin.pause(engine, ["mial"], "tester", force=True).changed == ("mial",)
    again = admin.pause(engine, ["mail", "mial"], "tester")
    assert (again.changed, again.unchanged) == (("mail",), ("mial",))
    with pytest.raises(ValueError, match="not a queue name"):
        admin.pause(engine, ["*"], "tester")


def test_resume_refuses_an_unknown_queue_and_says_when_one_was_not_paused(engine) -> None:
    djctl.enqueue(Fail(), queue="mail")
    admin.pause(engine, ["mail"], "tester")
    refused = admin.resume(engine, ["mail", "nosuch"])
    assert refused.unknown == ("nosuch",)
    assert paused(engine) == {"mail"}  # all or nothing
    assert admin.resume(engine, ["mail"]).changed == ("mail",)
    assert admin.resume(engine, ["mail"]).unchanged == ("mail",)


def test_a_pause_records_who_and_when(engine) -> None:
    djctl.enqueue(Fail(), queue="mail")
    before = utcnow()
    admin.pause(engine, ["mail"], "alice on railgun (djctl pause)")
    with engine.connect() as conn:
        p = paused_queues(conn)["mail"]
    assert p.paused_by == "alice on railgun (djctl pause)"
    assert before - dt.timedelta(seconds=5) <= p.paused_at <= utcnow() + dt.timedelta(seconds=5)


def test_cancel_keeps_a_waiting_job_as_failed_saying_who(engine, db_url: str) -> None:
    job = djctl.enqueue(Fail())
    assert admin.cancel(engine, [job], "alice on railgun (djctl cancel)").done == (job,)
    r = row(engine, job)
    assert r is not None and r["failed_at"] is not None and r["locked_by"] is None
    assert r["last_error"].startswith("Cancelled by alice on railgun (djctl cancel) at ")
    assert r["last_error"].endswith("; it was not running")
    assert claim(engine) == []  # never runs again


def test_cancel_of_a_claimed_job_takes_the_claim_away_and_the_worker_sees_it(engine) -> None:
    job, other = djctl.enqueue(Fail()), djctl.enqueue(Fail())
    assert claim(engine) == [job, other]
    c = Claims(engine.dialect.name, ME, Filter())
    assert admin.cancel(engine, [job], "bob").done == (job,)
    r = row(engine, job)
    assert r is not None and (r["locked_by"], r["locked_at"]) == (None, None) and r["failed_at"] is not None
    assert r["last_error"] == r["last_error"].split(";")[0] + f"; it was claimed by {ME}"
    with engine.begin() as conn:
        lost = c.lost(conn, [job, other])
        assert list(lost) == [job] and lost[job].startswith(admin.CANCELLED)
        # Its worker's late outcome changes nothing: the job stays cancelled.
        assert not c.fail(conn, job, "RuntimeError: boom", utcnow(), utcnow())
        assert c.completed(conn, [job]) == set()
    assert row(engine, job)["last_error"].startswith(admin.CANCELLED)


def test_a_claim_deleted_under_its_worker_is_lost_with_no_error(engine) -> None:
    job = djctl.enqueue(Fail())
    claim(engine)
    admin.clear(engine)
    c = Claims(engine.dialect.name, ME, Filter())
    with engine.begin() as conn:
        assert c.lost(conn, [job]) == {job: None}


def test_cancel_is_all_or_nothing_and_refuses_unknown_and_failed_jobs(engine, db_url: str) -> None:
    waiting, failed = djctl.enqueue(Fail()), djctl.enqueue(Fail())
    with engine.begin() as conn:
        conn.execute(update(delayed_jobs).where(delayed_jobs.c.id == failed).values(
            failed_at=api.utc_naive(api.now()), last_error="RuntimeError: boom"))
    outcome = admin.cancel(engine, [waiting, failed, 999999], "tester")
    assert outcome.done == ()
    assert outcome.refused == {failed: Refusal.FAILED, 999999: Refusal.UNKNOWN}
    assert count(db_url, "id = :i AND failed_at IS NULL AND last_error IS NULL", i=waiting) == 1
    assert row(engine, failed)["last_error"] == "RuntimeError: boom"


@pytest.mark.parametrize("options", [{"concurrency_key": "account:1"},
                                     {"throttle": ("partner", 5, dt.timedelta(seconds=1))}],
                         ids=["concurrency-key", "throttle"])
def test_a_paused_queue_holds_its_jobs_with_limits_too(engine, tmp_path, options) -> None:
    """The gated claim (jobs with a concurrency key or a throttle) obeys a pause as the
    plain claim does."""
    from djctl.worker.worker import Worker
    from tests.jobs import Touch

    out = tmp_path / "out"
    job = djctl.enqueue(Touch(str(out), "limited"), queue="mail", **options)
    admin.pause(engine, ["mail"], "tester")
    assert Worker(sleep_delay=0.05, log=lambda _line: None).work_off() == (0, 0)
    assert row(engine, job)["locked_by"] is None and not out.exists()
    admin.resume(engine, ["mail"])
    assert Worker(sleep_delay=0.05, log=lambda _line: None).work_off() == (1, 0)
    assert out.read_text() == "limited\n"
