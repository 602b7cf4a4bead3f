"""What the console reads and does (djctl.tui.sources and the stats queries it adds), on every database."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import bindparam, text, update

import djctl
from djctl import api, config
from djctl.queue import stats
from djctl.queue.schema import delayed_jobs
from djctl.tui.model import JobFilter
from djctl.tui.sources import ActionError, DatabaseSource
from djctl.worker import identity
from djctl.worker.worker import Worker
from tests.jobs import Fail, Touch
from tests.support.rows import count


def fail(message: str, queue: str | None = None, priority: int = 0) -> int:
    job_id = djctl.enqueue(Fail(message), queue=queue, priority=priority)
    assert Worker(max_attempts=1, log=lambda line: None).work_off(num=10)[1] >= 1
    return job_id


def groups(conn, now) -> list:
    return [(d.queue, d.priority) for d in stats.queue_depth(conn, now)]


def test_job_name_reads_whole_or_cut_handlers():
    assert stats.job_name('{"job":"shop.jobs:NewsletterJob","state":{}}') == "NewsletterJob"
    assert stats.job_name('{"call":"shop.models:Photo.upload","self":{"x":1},"args":[]}') == "Photo#upload"
    assert stats.job_name('{"call":"shop.mail:send_welcome","args":["a very long') == "send_welcome"
    assert stats.job_name('{"call":"shop.models:Photo.upload","self":{"__djctl__":"or') == "Photo#upload"
    assert stats.job_name("not json") == "?"


def test_failed_jobs_newest_first_limited_and_filtered(db_url):
    first = fail("disk full 100%")
    second = fail("network_down")
    third = fail("disk full again", queue="mail", priority=5)
    djctl.enqueue(Touch("/dev/null", "ok"))
    now = api.utc_naive(api.now())
    with api.engine(db_url).connect() as conn:
        g = groups(conn, now)
        assert [j.id for j in stats.failed_jobs(conn, g)] == [third, second, first]
        assert [j.id for j in stats.failed_jobs(conn, g, limit=2)] == [third, second]
        job = stats.failed_jobs(conn, g)[0]
        assert (job.name, job.queue, job.priority, job.attempts, job.error) == (
            "Fail", "mail", 5, 1, "RuntimeError: disk full again")
        by_text = stats.FailedFilter(text="DISK FULL")
        assert [j.id for j in stats.failed_jobs(conn, g, by_text)] == [third, first]
        assert stats.count_failed(conn, g, by_text) == 2
        # LIKE's wildcards are taken literally
        assert [j.id for j in stats.failed_jobs(conn, g, stats.FailedFilter(text="100%"))] == [first]
        assert [j.id for j in stats.failed_jobs(conn, g, stats.FailedFilter(text="k_d"))] == [second]
        assert stats.failed_jobs(conn, g, stats.FailedFilter(job_class="touch")) == []
        assert [j.id for j in stats.failed_jobs(conn, [("default", 0)])] == [second, first]
        assert stats.failed_jobs(conn, []) == []


def test_queue_depth_counts_every_queue_priority_and_state(db_url):
    """Depth agrees with counting the rows one by one, over queues that sort before and
    after each other (and the default queue, which sorts differently on each database)."""
    rng = random.Random(7)
    now = api.now()
    expected: dict = {}
    states = ("ready", "scheduled", "running", "failed")
    jobs = []
    for i in range(300):
        queue, priority = rng.choice([None, "a", "mail", "z" * 20]), rng.choice([-5, 0, 3, 100])
        state = rng.choice(states)
        run_at = now + timedelta(minutes=5) if state == "scheduled" else now - timedelta(seconds=rng.randint(1, 99))
        jobs.append((djctl.enqueue(Touch("/dev/null", str(i)), queue=queue, priority=priority, run_at=run_at), state))
        counts = expected.setdefault((queue or "default", priority), dict.fromkeys(states, 0))
        counts[state] += 1
    engine = api.engine(db_url)
    with engine.begin() as conn:
        for state, column in (("running", "locked_at"), ("failed", "failed_at")):
            ids = [j for j, s in jobs if s == state]
            in_ids = ",".join(map(str, ids))
            conn.execute(text(f"UPDATE delayed_jobs SET {column} = :t, locked_by = :by WHERE id IN ({in_ids})"),
                         {"t": api.utc_naive(now), "by": "host:x pid:1" if state == "running" else None})
    with engine.connect() as conn:
        depth = stats.queue_depth(conn, api.utc_naive(now))
    assert {(d.queue, d.priority): {s: getattr(d, s) for s in states} for d in depth} == expected
    in_order = sorted(expected, key=lambda g: (g[0] != "default", g[0], g[1]))
    assert [(d.queue, d.priority) for d in depth] == in_order


def test_hundreds_of_queue_and_priority_groups(db_url):
    """600 groups: more than SQLite accepts in one compound SELECT, so the per-group
    queries go in slices; the console's answers are the same as for a few groups."""
    now = api.now()
    ids = djctl.enqueue_many([Touch("/dev/null", str(i)) for i in range(600)], run_at=now - timedelta(minutes=1))
    failed = ids[::2]
    t = delayed_jobs.c
    with api.engine(db_url).begin() as conn:  # one statement, many rows: each job its own group
        conn.execute(
            update(delayed_jobs).where(t.id == bindparam("job"))
            .values(queue=bindparam("q"), priority=bindparam("p"), failed_at=bindparam("f")),
            [{"job": job, "q": f"q{i // 5:03}", "p": i % 5,
              "f": api.utc_naive(now - timedelta(seconds=1000 - i // 2)) if i % 2 == 0 else None}
             for i, job in enumerate(ids)])
    with api.engine(db_url).connect() as conn:
        depth = stats.queue_depth(conn, api.utc_naive(now))
        assert [(d.queue, d.priority, d.ready, d.failed, d.scheduled + d.running) for d in depth] == [
            (f"q{i // 5:03}", i % 5, i % 2, 1 - i % 2, 0) for i in range(600)]
        g = [(d.queue, d.priority) for d in depth]
        assert [j.id for j in stats.failed_jobs(conn, g)] == failed[::-1][:100]
        assert stats.count_failed(conn, g) == 300
        assert stats.count_failed(conn, g, stats.FailedFilter(text="Touch")) == 300
        assert len(stats.oldest_ready(conn, api.utc_naive(now), g)) == 300


def test_oldest_ready_per_group(db_url):
    now = api.now()
    djctl.enqueue(Touch("/dev/null", "old"), run_at=now - timedelta(minutes=5))
    djctl.enqueue(Touch("/dev/null", "new"), run_at=now - timedelta(minutes=1))
    djctl.enqueue(Touch("/dev/null", "later"), queue="mail", run_at=now + timedelta(hours=1))
    with api.engine(db_url).connect() as conn:
        found = stats.oldest_ready(conn, api.utc_naive(now), groups(conn, api.utc_naive(now)))
    assert list(found) == [("default", 0)]
    assert abs(found[("default", 0)] - api.utc_naive(now - timedelta(minutes=5))) < timedelta(seconds=1)


def test_snapshot_lists_every_hosts_processes_with_their_current_job(db_url):
    now = api.utc_naive(api.now())
    busy = djctl.enqueue(Touch("/dev/null", "busy"))
    with api.engine(db_url).begin() as conn:
        for name, pid, beat in (("worker.1", 4242, now), ("worker.2", 4343, now - timedelta(minutes=5))):
            conn.execute(text(
                "INSERT INTO djctl_processes (host, pid, name, type, supervisor_pid, state, command, started_at, "
                "heartbeat_at) VALUES ('elsewhere', :pid, :name, 'worker', 1, 'up', 'djctl work', :t, :beat)"),
                {"pid": pid, "name": name, "t": now - timedelta(hours=1), "beat": beat})
        conn.execute(text("UPDATE delayed_jobs SET locked_at = :t, locked_by = :by WHERE id = :id"),
                     {"t": now, "by": identity.format("elsewhere", 4242), "id": busy})
    snap = DatabaseSource(config.current()).snapshot(JobFilter())
    assert not snap.supervisor.running and snap.supervisor.note == "no supervisor running"
    one, two = snap.processes
    assert (one.name, one.host, one.local, one.stale, one.job) == ("worker.1", "elsewhere", False, False,
                                                                  f"Touch (id={busy})")
    assert (two.name, two.stale, two.job) == ("worker.2", True, None)
    assert [(q.queue, q.ready, q.running) for q in snap.queues] == [("default", 0, 1)]


def test_queue_filter_and_actions(db_url):
    ready = djctl.enqueue(Touch("/dev/null", "r"), queue="mail")
    djctl.enqueue(Touch("/dev/null", "d"))
    a = fail("a")
    b = fail("b", queue="mail")
    source = DatabaseSource(config.current())
    snap = source.snapshot(JobFilter(queue="mail"))
    assert [q.queue for q in snap.queues] == ["mail"] and [j.id for j in snap.failed] == [b]
    snap = source.snapshot(JobFilter(queue="default"))
    assert [q.queue for q in snap.queues] == ["default"] and [j.id for j in snap.failed] == [a]
    assert "RuntimeError: a" in source.traceback(a) and "Traceback" in source.traceback(a)

    with pytest.raises(ActionError, match=f"job {ready} not retried: it is gone"):  # its worker ran it
        source.retry([a, ready])  # all or nothing: a is not retried either
    assert count(db_url, "id = :id AND failed_at IS NOT NULL", id=a) == 1
    assert source.retry([a]) == 1
    assert count(db_url, "id = :id AND failed_at IS NULL AND attempts = 0", id=a) == 1
    assert source.retry_failed(JobFilter(queue="mail", text="b")) == 1
    assert count(db_url, "failed_at IS NOT NULL") == 0

    fail("c")  # its worker fails the retried a and b again too, and runs the others
    held = djctl.enqueue(Touch("/dev/null", "held"), queue="mail")
    with api.engine(db_url).begin() as conn:  # a job a worker holds right now
        conn.execute(text("UPDATE delayed_jobs SET locked_at = :t, locked_by = 'host:x pid:1' WHERE id = :id"),
                     {"t": api.utc_naive(api.now()), "id": held})
    with pytest.raises(ActionError, match=f"job {held} not deleted: a worker is running it"):
        source.delete([held])
    assert count(db_url, "id = :id", id=held) == 1
    assert source.delete_failed(JobFilter(queue="mail")) == 1
    assert source.delete_failed(JobFilter(job_class="fail")) == 2 and count(db_url, "failed_at IS NOT NULL") == 0
    assert source.clear_queue("mail") == 1  # clear takes everything, as djctl clear --queue does
    assert count(db_url, "queue = 'mail'") == 0
    djctl.enqueue(Touch("/dev/null", "default"))
    assert source.clear_queue("default") == 1 and count(db_url) == 0


def test_scale_without_a_supervisor_says_so(db_url):
    from djctl.tui.sources import ActionError

    with pytest.raises(ActionError, match="no supervisor running"):
        DatabaseSource(config.current()).scale("worker", 1)
