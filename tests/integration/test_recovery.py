"""worker/recovery.py on each database: which claims are released, and how a dead worker's
journal settles its jobs."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

from sqlalchemy import select, update

import djctl
from djctl import clock
from djctl.queue.schema import delayed_jobs
from djctl.worker import identity, journal, recovery
from tests import jobs


def _dead_pid(engine=None) -> int:
    """A pid that ran and is gone; given ``engine``, marked as a worker of ours (see identity.mark)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    if engine is not None:
        identity.mark(journal.mark_of(journal.path(engine.url, child.pid)))
    return child.pid


def _lock(engine, ids, name, attempts=1, at=None) -> None:
    with engine.begin() as conn:
        conn.execute(update(delayed_jobs).where(delayed_jobs.c.id.in_(ids))
                     .values(locked_by=name, locked_at=at or clock.utcnow(), attempts=attempts))


def _rows(engine) -> dict[int, dict]:
    with engine.connect().execution_options(sqlite_read=True) as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(select(delayed_jobs))}


def test_only_this_hosts_dead_workers_and_expired_claims_are_released(engine):
    host = identity.hostname()
    dead, alive, elsewhere, expired = (djctl.enqueue(jobs.Touch("/dev/null", k)) for k in "abcd")
    _lock(engine, [dead], identity.format(host, _dead_pid(engine)))
    _lock(engine, [alive], identity.format(host, os.getpid()))
    _lock(engine, [elsewhere], identity.format("another-host", _dead_pid()))
    _lock(engine, [expired], identity.format("another-host", 1), at=clock.utcnow() - dt.timedelta(hours=5))
    with engine.begin() as conn:
        assert recovery.dead_workers(conn, host) == [identity.format(host, _pid_of(engine, dead))]
        assert recovery.recover(conn, clock.utcnow(), dt.timedelta(hours=4), 25) == 2
    rows = _rows(engine)
    assert rows[dead]["locked_by"] is None and rows[dead]["attempts"] == 1, "the attempt counts"
    assert rows[expired]["locked_by"] is None
    assert rows[alive]["locked_by"] is not None and rows[elsewhere]["locked_by"] is not None


def _pid_of(engine, job_id: int) -> int:
    return identity.parse(_rows(engine)[job_id]["locked_by"])[1]


def test_a_dead_workers_journal_deletes_finished_jobs_and_refunds_unstarted_ones(engine):
    pid = _dead_pid(engine)
    name = identity.format(identity.hostname(), pid)
    finished, running, unstarted = (djctl.enqueue(jobs.Touch("/dev/null", k)) for k in "abc")
    _lock(engine, [finished, running, unstarted], name)
    file = journal.path(engine.url, pid)
    file.write_text(f"s{finished}\n{finished}\ns{running}\n")
    with engine.begin() as conn:
        recovery.release_dead(conn, [name], "worker died", clock.utcnow(), 25)
    rows = _rows(engine)
    assert finished not in rows, "it finished: deleted, not run again"
    assert (rows[running]["locked_by"], rows[running]["attempts"], rows[running]["last_error"]) == (
        None, 1, "worker died")
    assert (rows[unstarted]["locked_by"], rows[unstarted]["attempts"]) == (None, 0), "never started: refunded"
    assert not file.exists()


def test_a_dead_pid_of_a_twin_host_is_judged_by_its_lease_alone(engine):
    """Issue 14, 3: a host of the same name (another machine, or another PID namespace)
    has pids that mean nothing in our process table. Its claims are not released because
    the pid is missing here; only once their lease expires."""
    host = identity.hostname()
    unmarked, twin = (djctl.enqueue(jobs.Touch("/dev/null", k)) for k in "ab")
    _lock(engine, [unmarked], identity.format(host, _dead_pid()))
    twin_pid = _dead_pid()
    journal.mark_of(journal.path(engine.url, twin_pid)).write_text("another-boot/4026531836")
    _lock(engine, [twin], identity.format(host, twin_pid))
    with engine.begin() as conn:
        assert recovery.dead_workers(conn, host) == []
        assert recovery.recover(conn, clock.utcnow(), dt.timedelta(seconds=60), 25) == 0
        assert recovery.recover(conn, clock.utcnow() + dt.timedelta(seconds=61), dt.timedelta(seconds=60), 25) == 2


def test_a_worker_cut_off_until_now_judges_no_lease(engine):
    """Issue 14, 1: ``lease=None`` (not yet connected for a whole lease) releases nothing
    that merely looks expired."""
    old = djctl.enqueue(jobs.Touch("/dev/null", "old"))
    _lock(engine, [old], identity.format("another-host", 1), at=clock.utcnow() - dt.timedelta(hours=5))
    with engine.begin() as conn:
        assert recovery.recover(conn, clock.utcnow(), None, 25) == 0
    assert _rows(engine)[old]["locked_by"] is not None
