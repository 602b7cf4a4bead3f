"""queue.admin on every database: what each action changes, what it refuses and why, and
that a retry wakes this host's idle workers."""

from __future__ import annotations

import datetime as dt
import select as select_module

import pytest
from sqlalchemy import update

import djctl
from djctl import api
from djctl.queue import admin, doorbell
from djctl.queue import engines as store
from djctl.queue.admin import EVERY, Refusal
from djctl.queue.schema import delayed_jobs
from djctl.queue.stats import FailedFilter
from tests.jobs import Fail
from tests.support.rows import count

_c = delayed_jobs.c


def set_rows(ids: list[int], **values) -> None:
    with api.engine().begin() as conn:
        conn.execute(update(delayed_jobs).where(_c.id.in_(ids)).values(**values))


def failed(*queues: str | None, error: str = "RuntimeError: boom") -> list[int]:
    ids = [djctl.enqueue(Fail(), queue=q) for q in queues]
    set_rows(ids, failed_at=api.utc_naive(api.now()), attempts=25, last_error=error)
    return ids


def held(queue: str | None = None) -> int:
    """A job as a worker's claim leaves it."""
    job = djctl.enqueue(Fail(), queue=queue)
    set_rows([job], locked_at=api.utc_naive(api.now()), locked_by="host:elsewhere pid:1", attempts=1)
    return job


def test_retry_by_id_is_all_or_nothing_and_says_why(db_url: str) -> None:
    eng = api.engine()
    (bad,) = failed("mail")
    waiting = djctl.enqueue(Fail())
    set_rows([waiting], attempts=2, run_at=api.utc_naive(api.now()) + dt.timedelta(minutes=5))
    running, never = held(), djctl.enqueue(Fail(), run_at=djctl.now() + dt.timedelta(hours=1))

    outcome = admin.retry(eng, [bad, waiting, running, never, 999999])
    assert outcome.done == ()
    assert outcome.refused == {running: Refusal.RUNNING, never: Refusal.NOT_FAILED, 999999: Refusal.UNKNOWN}
    assert count(db_url, "attempts = 0 AND failed_at IS NULL") == 1  # only never, as it was

    assert admin.retry(eng, [bad, waiting]).done == (bad, waiting)
    assert count(db_url, "id IN (:a, :b) AND attempts = 0 AND failed_at IS NULL AND run_at <= :now",
                 a=bad, b=waiting, now=api.utc_naive(api.now())) == 2
    assert admin.retry(eng, [bad]).refused == {bad: Refusal.NOT_FAILED}  # retried, not run since


def test_a_failed_row_with_a_stale_lock_is_still_retried(db_url: str) -> None:
    (job,) = failed(None)
    set_rows([job], locked_at=api.utc_naive(api.now()), locked_by="host:gone pid:1")
    assert admin.retry(api.engine(), [job]).done == (job,)
    assert count(db_url, "id = :i AND locked_by IS NULL", i=job) == 1


def test_retry_failed_takes_a_queue_the_default_queue_or_every_queue(db_url: str) -> None:
    eng = api.engine()
    mail, default, other = failed("mail", None, "other")
    held("mail")
    assert admin.retry_failed(eng, "mail").done == (mail,)
    assert admin.retry_failed(eng, None).done == (default,)
    assert admin.retry_failed(eng, "nosuch").done == ()
    assert admin.retry_failed(eng, EVERY).done == (other,)
    assert count(db_url, "failed_at IS NOT NULL") == 0


def test_retry_failed_and_delete_failed_obey_the_filter(db_url: str) -> None:
    eng = api.engine()
    a = failed("mail", error="RuntimeError: smtp down")
    b = failed("mail", error="ValueError: bad address")
    assert admin.retry_failed(eng, EVERY, FailedFilter(text="SMTP")).done == tuple(a)
    assert admin.delete_failed(eng, "mail", FailedFilter(text="address")).done == tuple(b)
    assert count(db_url) == 1 and count(db_url, "failed_at IS NULL") == 1


def test_delete_refuses_a_running_job_and_takes_any_other(db_url: str) -> None:
    eng = api.engine()
    running = held()
    (bad,) = failed(None)
    ready = djctl.enqueue(Fail())
    assert admin.delete(eng, [running, bad, ready]).refused == {running: Refusal.RUNNING}
    assert count(db_url) == 3
    assert admin.delete(eng, [bad, ready]).done == (bad, ready)
    assert admin.delete(eng, [bad]).refused == {bad: Refusal.UNKNOWN}
    assert admin.delete_failed(eng).done == () and count(db_url) == 1


def test_a_retry_rings_the_idle_workers_of_this_host(db_url: str, db_kind: str) -> None:
    if db_kind == "postgresql":
        pytest.skip("on PostgreSQL the delayed_jobs trigger wakes workers (LISTEN/NOTIFY)")
    bell = doorbell.Doorbell(doorbell.bell_dir(store.url_key(store.normalize_url(db_url))))
    try:
        (job,) = failed(None)
        bell.drain()
        assert admin.retry(api.engine(), [job]).done == (job,)
        readable, _, _ = select_module.select([bell], [], [], 10)
        assert readable == [bell]
        bell.drain()
        assert admin.retry(api.engine(), [job]).refused  # nothing changed: nobody is woken
        assert select_module.select([bell], [], [], 0.2)[0] == []
    finally:
        bell.close()
