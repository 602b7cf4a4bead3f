"""The claim SQL on each database: who gets which row, and what each outcome may change."""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import update

import djctl
from djctl.queue import claims as claim
from djctl.queue.claims import Claims, Filter
from djctl.queue.schema import delayed_jobs
from djctl.worker import identity, journal
from tests import jobs
from tests.support.rows import row, utcnow

HOST = identity.hostname()


def add(n: int = 1, **opts) -> list[int]:
    return djctl.enqueue_many([jobs.Touch("/dev/null", f"k{i}") for i in range(n)], **opts)


def set_rows(engine, ids, **values) -> None:
    with engine.begin() as conn:
        conn.execute(update(delayed_jobs).where(delayed_jobs.c.id.in_(ids)).values(**values))


def claims(engine, name: str = "host:test pid:1", **filter_args) -> Claims:
    return Claims(engine.dialect.name, name, Filter(**filter_args))


def do(engine, fn):
    with engine.begin() as conn:
        return fn(conn)


def test_worker_name_is_delayed_jobs():
    assert identity.format("railgun", 25794) == "host:railgun pid:25794"


def test_claim_locks_counts_an_attempt_and_orders(engine):
    late = add(1, priority=1)[0]
    [a, b] = add(2)
    past = add(1, run_at=djctl.now() - dt.timedelta(minutes=1))[0]
    add(1, run_at=djctl.now() + dt.timedelta(minutes=1))  # not ready
    c = claims(engine, "host:h pid:9")
    now = utcnow()
    got = do(engine, lambda conn: c.claim(conn, 10, now))
    assert [j.id for j in got] == [past, a, b, late]
    assert {j.attempts for j in got} == {1}
    r = row(engine, a)
    assert (r["locked_by"], r["locked_at"], r["attempts"]) == ("host:h pid:9", now, 1)
    assert do(engine, lambda conn: c.claim(conn, 10, now)) == []


def test_claim_respects_limit_and_filters(engine):
    add(3, queue="mail")
    add(2, queue="media", priority=5)
    add(2)
    now = utcnow()
    got = do(engine, lambda conn: claims(engine, queues=("mail", "media")).claim(conn, 2, now))
    assert [j.queue for j in got] == ["mail", "mail"]
    got = do(engine, lambda conn: claims(engine, queues=("media",), min_priority=5, max_priority=5).claim(conn, 9, now))
    assert [(j.queue, j.priority) for j in got] == [("media", 5)] * 2
    got = do(engine, lambda conn: claims(engine, max_priority=0).claim(conn, 9, now))
    assert [j.queue for j in got] == ["mail", "default", "default"]


def test_outcomes_change_only_rows_still_held(engine):
    mine, theirs = "host:h pid:1", "host:h pid:2"
    ids = add(4)
    now = utcnow()
    got = do(engine, lambda conn: claims(engine, mine).claim(conn, 4, now))
    assert len(got) == 4
    set_rows(engine, ids, locked_by=theirs)  # taken over
    c = claims(engine, mine)
    assert do(engine, lambda conn: c.complete(conn, ids)) == 0
    assert do(engine, lambda conn: c.fail(conn, ids[0], "late", now, None)) is False
    assert do(engine, lambda conn: c.fail(conn, ids[0], "late", now, None, destroy=True)) is False
    assert do(engine, lambda conn: c.release(conn, ids, now)) == 0
    for i in ids:
        r = row(engine, i)
        assert (r["locked_by"], r["attempts"], r["last_error"], r["failed_at"]) == (theirs, 1, None, None)

    set_rows(engine, ids, locked_by=mine)
    retry_at = now + dt.timedelta(seconds=6)
    assert do(engine, lambda conn: c.fail(conn, ids[0], "boom", now, retry_at)) is True
    assert do(engine, lambda conn: c.fail(conn, ids[1], "dead", now, None)) is True
    assert do(engine, lambda conn: c.release(conn, [ids[2]], now)) == 1
    assert do(engine, lambda conn: c.complete(conn, [ids[3]])) == 1
    r0, r1, r2 = row(engine, ids[0]), row(engine, ids[1]), row(engine, ids[2])
    assert (r0["run_at"], r0["last_error"], r0["failed_at"], r0["locked_by"]) == (retry_at, "boom", None, None)
    assert (r1["failed_at"], r1["last_error"], r1["locked_at"]) == (now, "dead", None)
    assert (r2["attempts"], r2["locked_at"], r2["locked_by"]) == (0, None, None)  # the claim's attempt given back
    assert row(engine, ids[3]) is None


def test_concurrent_claimers_never_get_the_same_job(engine):
    ids = add(240)
    got: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def claimer(name: str) -> None:
        c = claims(engine, name)
        mine = got.setdefault(name, [])
        try:
            start.wait()
            while True:
                with engine.begin() as conn:
                    batch = c.claim(conn, 3, utcnow())
                if not batch:
                    return
                mine.extend(j.id for j in batch)
                with engine.begin() as conn:
                    c.complete(conn, [j.id for j in batch])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=claimer, args=(f"host:t pid:{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    claimed = [i for batch in got.values() for i in batch]
    assert sorted(claimed) == sorted(ids)  # every job once, no job twice


def test_release_dead_keeps_the_attempt_and_fails_spent_jobs(engine):
    dead, alive = "host:h pid:1", "host:h pid:2"
    a, b, c = add(3)
    now = utcnow()
    set_rows(engine, [a], locked_by=dead, locked_at=now, attempts=1)
    set_rows(engine, [b], locked_by=dead, locked_at=now, attempts=25)
    set_rows(engine, [c], locked_by=alive, locked_at=now, attempts=1)
    assert do(engine, lambda conn: claim.release_dead(conn, [dead], "worker died", now, 25)) == 2
    ra, rb, rc = row(engine, a), row(engine, b), row(engine, c)
    assert (ra["locked_by"], ra["attempts"], ra["failed_at"], ra["last_error"]) == (None, 1, None, "worker died")
    assert (rb["locked_by"], rb["attempts"], rb["failed_at"]) == (None, 25, now)
    assert (rc["locked_by"], rc["attempts"]) == (alive, 1)


def test_release_expired_only_past_the_lease(engine):
    old, recent = add(2)
    now = utcnow()
    set_rows(engine, [old], locked_by="host:x pid:1", locked_at=now - dt.timedelta(hours=5), attempts=2)
    set_rows(engine, [recent], locked_by="host:x pid:1", locked_at=now - dt.timedelta(hours=3), attempts=2)
    assert do(engine, lambda conn: claim.release_expired(conn, dt.timedelta(hours=4), now, 25)) == 1
    assert row(engine, old)["locked_by"] is None and row(engine, old)["attempts"] == 2
    assert "lease expired" in row(engine, old)["last_error"]
    assert row(engine, recent)["locked_by"] == "host:x pid:1"


def test_a_worker_releases_claims_of_dead_workers_on_this_host(engine, tmp_path):
    # A pid no process can have: above the kernel's limit.
    dead_pid = int(open("/proc/sys/kernel/pid_max").read()) + 1
    out = tmp_path / "out"
    ran = djctl.enqueue(jobs.Touch(str(out), "again"))
    spent = djctl.enqueue(jobs.Touch(str(out), "spent"))
    elsewhere = djctl.enqueue(jobs.Touch(str(out), "elsewhere"))
    now = utcnow()
    identity.mark(journal.mark_of(journal.path(engine.url, dead_pid)))  # it ran here, in our namespace
    set_rows(engine, [ran], locked_by=f"host:{HOST} pid:{dead_pid}", locked_at=now, attempts=1)
    set_rows(engine, [spent], locked_by=f"host:{HOST} pid:{dead_pid}", locked_at=now, attempts=3)
    set_rows(engine, [elsewhere], locked_by=f"host:elsewhere pid:{dead_pid}", locked_at=now, attempts=1)
    assert djctl.Worker(sleep_delay=0.2, max_attempts=3).work_off() == (1, 0)
    assert out.read_text() == "again\n"
    r = row(engine, spent)
    assert r["failed_at"] is not None and r["attempts"] == 3 and r["locked_by"] is None
    assert "died" in r["last_error"]
    assert row(engine, elsewhere)["locked_by"] == f"host:elsewhere pid:{dead_pid}"  # not ours to judge


def test_renew_refreshes_held_claims_and_reports_lost_ones(engine):
    mine = "host:h pid:1"
    ids = add(3)
    assert len(do(engine, lambda conn: claims(engine, mine).claim(conn, 3, utcnow()))) == 3
    claimed_at = utcnow() - dt.timedelta(minutes=10)
    set_rows(engine, ids, locked_at=claimed_at)
    set_rows(engine, [ids[2]], locked_by="host:h pid:2")  # taken over
    now = utcnow()
    assert do(engine, lambda conn: claims(engine, mine).renew(conn, ids, now)) == set(ids[:2])
    assert [row(engine, i)["locked_at"] for i in ids] == [now, now, claimed_at]
    assert do(engine, lambda conn: claims(engine, mine).renew(conn, [], now)) == set()
