"""Concurrency limits, throttles and unique keys on each database: what enqueue adds, what
the claim takes, what `stats` shows."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

import djctl
from djctl import api
from djctl.queue.claims import Claims, Filter
from djctl.queue.gates import Gates
from djctl.queue.stats import queue_depth, render_depth
from tests import jobs
from tests.support.rows import count, row, utcnow


def claimer(engine, n: int) -> tuple[Claims, Gates]:
    name = f"host:test pid:{n}"
    return Claims(engine.dialect.name, name), Gates(engine.dialect.name, name, Filter())


def claim_all(engine, n: int, limit: int = 50) -> list[int]:
    """What worker ``n`` claims in one round: the plain claim, then through the gates."""
    plain, gates = claimer(engine, n)
    with engine.begin() as conn:
        got = plain.claim(conn, limit, utcnow())
        got += gates.claim(conn, limit, utcnow())
    return sorted(j.id for j in got)


def finish(engine, n: int, ids: list[int]) -> None:
    plain, _ = claimer(engine, n)
    with engine.begin() as conn:
        plain.complete(conn, ids)


def span(label: str, **kwargs) -> jobs.Span:
    return jobs.Span("/dev/null", label, **kwargs)


def test_a_key_runs_at_most_its_limit_at_once_across_claimers(engine):
    keyed = [djctl.enqueue(span(f"a{i}"), concurrency_key="a", concurrency_limit=2) for i in range(5)]
    plain = djctl.enqueue(span("free"))
    first = claim_all(engine, 1)
    assert first == [*keyed[:2], plain]  # two slots, and the keyless job alongside
    assert claim_all(engine, 2) == []  # both slots held: another worker takes nothing
    finish(engine, 1, [keyed[0]])
    assert claim_all(engine, 2) == [keyed[2]]  # a slot freed: the next in line, no more
    assert row(engine, keyed[3])["attempts"] == 0  # waiting spends no attempt


def test_the_class_attributes_set_the_key_and_the_limit(engine):
    ids = [djctl.enqueue(jobs.SyncAccount("/dev/null", f"s{i}", account=i % 2)) for i in range(4)]
    assert claim_all(engine, 1) == [ids[0], ids[1]]  # one per account
    assert row(engine, ids[2])["gate"] == "concurrency:account:0"
    assert row(engine, ids[2])["concurrency_limit"] == 1


def test_given_back_and_failed_claims_free_their_slot(engine):
    a, b = (djctl.enqueue(span(x), concurrency_key="k") for x in "ab")
    assert claim_all(engine, 1) == [a]
    plain, _ = claimer(engine, 1)
    with engine.begin() as conn:
        plain.release(conn, [a], utcnow())  # given back unstarted
    assert claim_all(engine, 2) == [a]
    plain2, _ = claimer(engine, 2)
    with engine.begin() as conn:
        plain2.fail(conn, a, "boom", utcnow(), retry_at=utcnow() + timedelta(hours=1))
    assert claim_all(engine, 3) == [b]


def test_jobs_blocked_behind_a_busy_key_do_not_hold_back_other_jobs(engine):
    djctl.enqueue_many([span(f"b{i}") for i in range(300)], concurrency_key="busy")
    later = djctl.enqueue_many([span(f"free{i}") for i in range(3)], priority=5)
    other = djctl.enqueue(span("other"), concurrency_key="other", priority=9)
    got = claim_all(engine, 1, limit=10)
    assert set(later) | {other} <= set(got)
    assert len([i for i in got if i not in later and i != other]) == 1  # one of the busy key


def test_throttle_starts_at_most_n_per_period(engine):
    ids = djctl.enqueue_many([span(f"t{i}") for i in range(5)], throttle=("api", 2, timedelta(hours=1)))
    assert claim_all(engine, 1) == ids[:1]  # one start per throttle per look
    assert claim_all(engine, 2) == ids[1:2]
    finish(engine, 1, ids[:2])
    assert claim_all(engine, 3) == []  # finished or not, two started this hour
    assert {row(engine, i)["attempts"] for i in ids[2:]} == {0}


def test_a_keyed_and_throttled_job_waits_for_both(engine):
    a = djctl.enqueue(span("a"), concurrency_key="k", throttle=("t", 1, timedelta(hours=1)))
    b = djctl.enqueue(span("b"), concurrency_key="j", throttle=("t", 1, timedelta(hours=1)))
    assert claim_all(engine, 1) in ([a], [b])  # two keys free, one start left in the throttle
    assert claim_all(engine, 2) == []


def test_unique_key_adds_nothing_while_queued_and_is_free_once_started(engine):
    first = djctl.enqueue(span("w"), unique_key="welcome:7")
    assert djctl.enqueue(span("w again"), unique_key="welcome:7") == first
    x, y = djctl.enqueue_many([span("x"), span("y")], unique_key="many")
    assert x == y != first
    assert count(engine.url.render_as_string(hide_password=False)) == 2
    assert first in claim_all(engine, 1)  # it starts: a new one may be queued
    second = djctl.enqueue(span("w later"), unique_key="welcome:7")
    assert second != first


def test_unique_while_running_holds_the_key_until_the_job_ends(engine):
    first = djctl.enqueue(span("r"), unique_key="r", unique_while="running")
    assert first in claim_all(engine, 1)
    assert djctl.enqueue(span("r2"), unique_key="r", unique_while="running") == first
    finish(engine, 1, [first])
    assert djctl.enqueue(span("r3"), unique_key="r", unique_while="running") != first


def test_a_job_that_fails_for_good_frees_its_unique_key(engine):
    first = djctl.enqueue(span("f"), unique_key="f", unique_while="running")
    claim_all(engine, 1)
    plain, _ = claimer(engine, 1)
    with engine.begin() as conn:
        plain.fail(conn, first, "boom", utcnow(), retry_at=None)
    assert row(engine, first)["failed_at"] is not None
    assert djctl.enqueue(span("f2"), unique_key="f", unique_while="running") != first


def test_a_unique_enqueue_inside_the_callers_transaction(engine):
    from sqlalchemy.orm import Session

    with Session(engine) as s, s.begin():
        a = djctl.enqueue(span("s"), unique_key="in-session", session=s)
        assert djctl.enqueue(span("s2"), unique_key="in-session", session=s) == a
        s.execute(text("SELECT 1"))  # the transaction is still usable
    assert row(engine, a) is not None


def _enqueue_at_once(threads: int, label: str) -> list[int]:
    """``threads`` threads enqueue one job each with the unique key ``once``, released together."""
    barrier = threading.Barrier(threads)
    got: list[int] = []
    errors: list[BaseException] = []

    def enqueue(i: int) -> None:
        barrier.wait()
        try:
            got.append(djctl.enqueue(span(f"{label}/{i}"), unique_key="once"))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    started = [threading.Thread(target=enqueue, args=(i,)) for i in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()
    assert not errors, errors[0]
    return got


def test_sixteen_enqueuers_of_one_key_add_one_job_each_time(engine):
    """Acceptance 2: 16 threads enqueue the same unique_key at once, 20 times over."""
    url = engine.url.render_as_string(hide_password=False)
    for round_ in range(20):
        got = _enqueue_at_once(16, str(round_))
        assert len(got) == 16 and len(set(got)) == 1
        assert count(url, "unique_key = 'once'") == 1
        # It runs (claimed and completed): the key may be enqueued again.
        assert claim_all(engine, round_) == got[:1]
        finish(engine, round_, got[:1])
    assert count(url) == 0


def test_limits_are_checked_at_enqueue_and_nothing_is_written(engine):
    url = engine.url.render_as_string(hide_password=False)
    bad = [
        ({"concurrency_limit": 2}, ValueError, "needs a concurrency_key"),
        ({"concurrency_key": "k", "concurrency_limit": 0}, ValueError, "at least 1"),
        ({"concurrency_key": ""}, TypeError, "non-empty"),
        ({"unique_key": "u", "unique_while": "forever"}, ValueError, "'queued' or 'running'"),
        ({"throttle": ("api", 10)}, TypeError, "(key, starts, period)"),
        ({"throttle": ("api", 10, timedelta(0))}, ValueError, "between 1 ms"),
    ]
    for options, error, words in bad:
        with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
            djctl.enqueue(span("bad"), **options)
    assert count(url) == 0


def test_stats_shows_waiting_jobs_and_the_key_they_wait_on(engine):
    djctl.enqueue_many([span(f"s{i}") for i in range(3)], concurrency_key="account:42")
    djctl.enqueue_many([span(f"t{i}") for i in range(2)], throttle=("partner", 1, timedelta(hours=1)))
    djctl.enqueue(span("plain"))
    claim_all(engine, 1)
    with engine.connect() as conn:
        depth = queue_depth(conn, utcnow())
    d = depth[0]
    assert (d.ready, d.waiting, d.running) == (0, 3, 3)
    assert d.waiting_on == {"concurrency:account:42": 2, "throttle:partner": 1}
    text_ = render_depth(depth)
    assert "waiting" in text_.splitlines()[0]
    assert "2 jobs wait for a slot of account:42" in text_
    assert "1 job waits for the throttle partner" in text_
    assert json.loads(json.dumps([r.as_dict() for r in depth]))[0]["waiting"] == 3


def test_without_keys_stats_looks_as_before(engine):
    djctl.enqueue(span("plain"))
    with engine.connect() as conn:
        out = render_depth(queue_depth(conn, utcnow()))
    assert out.splitlines()[0].split() == ["queue", "priority", "ready", "scheduled", "running", "failed"]


def test_schedules_and_delay_take_the_same_limits(engine):
    key = djctl.schedule(jobs.Span("/dev/null", "sched"), every=timedelta(hours=1), concurrency_key="nightly")
    with engine.connect() as conn:
        gate = conn.execute(text("SELECT gate FROM delayed_jobs WHERE schedule_key = :k"), {"k": key}).scalar()
    assert gate == "concurrency:nightly"
    with pytest.raises(ValueError, match="unique by its key"):
        djctl.schedule(jobs.Span("/dev/null", "s"), every=timedelta(hours=1), unique_key="x")
    a = djctl.delay(jobs.add_line, unique_key="line")("/dev/null", "a")
    assert djctl.delay(jobs.add_line, unique_key="line")("/dev/null", "b") == a


def test_handle_asynchronously_computes_limits_from_the_call(engine):
    limited = djctl.handle_asynchronously(jobs.add_line, unique_key=lambda path, text: f"line:{text}")
    a = limited("/dev/null", "one")
    assert limited("/dev/null", "one") == a
    assert limited("/dev/null", "two") != a
    with pytest.raises(TypeError, match="unexpected options"):
        djctl.handle_asynchronously(jobs.add_line, concurrency="k")


def test_a_worker_runs_limited_jobs_to_the_end(engine, tmp_path):
    path = tmp_path / "runs"
    djctl.enqueue_many([jobs.Span(str(path), f"k{i}") for i in range(4)], concurrency_key="k")
    djctl.enqueue_many([jobs.Span(str(path), f"t{i}") for i in range(3)], throttle=("t", 10, 60))
    djctl.enqueue(jobs.Span(str(path), "u"), unique_key="u")
    worker = djctl.Worker(sleep_delay=0.2)
    assert worker.work_off(num=100) == (8, 0)
    assert api.engine() is not None
    assert sorted(line.split()[1] for line in path.read_text().splitlines() if line.startswith("start")) == \
        sorted([f"k{i}" for i in range(4)] + [f"t{i}" for i in range(3)] + ["u"])


def test_past_a_hundred_gates_each_look_takes_the_next_ones(engine):
    for k in range(130):
        djctl.enqueue_many([span(f"{k}a"), span(f"{k}b")], concurrency_key=f"key{k:03}")
    _, gates = claimer(engine, 1)
    with engine.begin() as conn:
        first = gates.claim(conn, 1000, utcnow())
    with engine.begin() as conn:
        second = gates.claim(conn, 1000, utcnow())
    assert len(first) == 100  # one look: the first hundred gates
    assert len(second) == 30  # the next look: the other thirty (the first hundred are full)
