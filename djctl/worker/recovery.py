"""Releasing the claims of workers that are gone — dead on this host (provably ours), or
anywhere once their lease has gone unrenewed for heartbeat_timeout. One implementation, for the worker's maintenance
pass and for the supervisor alike.

A dead worker of this host may have left a journal (see journal.py): the jobs it finished
but had not recorded are deleted rather than run again, and those it claimed but never
started go back with their attempt refunded. What was running when it died keeps its
attempt, so a job that kills its worker every time ends failed instead of looping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, text

from djctl.queue import claims
from djctl.queue.schema import Timestamp
from djctl.worker import identity, journal

Alive = Callable[[int], bool]

_held_on_host = text(
    "SELECT DISTINCT locked_by FROM delayed_jobs WHERE locked_by LIKE :p AND failed_at IS NULL"
)
_delete_journaled = text(
    "DELETE FROM delayed_jobs WHERE id IN :ids AND locked_by = :name AND reoccur_in IS NULL AND cron IS NULL"
).bindparams(bindparam("ids", expanding=True))
_refund_unstarted = (
    "UPDATE delayed_jobs SET locked_at = NULL, locked_by = NULL, "
    "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = :now "
    "WHERE locked_by = :name AND failed_at IS NULL"
)
_refund_all = text(_refund_unstarted).bindparams(bindparam("now", type_=Timestamp))
_refund_but = text(_refund_unstarted + " AND id NOT IN :started").bindparams(
    bindparam("started", expanding=True), bindparam("now", type_=Timestamp)
)


def release_dead(conn: Connection, names: Sequence[str], error: str, now: datetime, max_attempts: int) -> int:
    """Release every claim held by the dead workers ``names`` (``host:<h> pid:<p>``) inside
    the caller's transaction; returns how many claims were released with their attempt counted.

    This host's workers are settled from their journals first: finished jobs are deleted,
    never-started ones given back without the attempt.
    """
    for name in names:
        _settle_journaled(conn, name, now)
    return claims.release_dead(conn, names, error, now, max_attempts)


def dead_workers(conn: Connection, host: str, alive: Alive = identity.pid_alive) -> list[str]:
    """The names of ``host``'s workers that hold claims but whose process is gone — only
    those provably ours (marked with our boot and PID namespace, see identity.py): a
    twin host of the same name is judged by its leases alone."""
    dead = []
    for name in conn.execute(_held_on_host, {"p": identity.like(host)}).scalars():
        parsed = identity.parse(name)
        if parsed is not None and parsed[0] == host and not alive(parsed[1]) and ours(conn, parsed[1]):
            dead.append(name)
    return dead


def ours(conn: Connection, pid: int) -> bool:
    """Whether this host name's worker ``pid`` ran in our boot and PID namespace (its mark)."""
    return identity.ours(journal.mark_of(journal.path(conn.engine.url, pid)))


def recover(conn: Connection, now: datetime, lease: timedelta | None, max_attempts: int,
            host: str | None = None) -> int:
    """The worker's maintenance pass: release claims whose lease (``heartbeat_timeout``)
    has expired by the database's clock ``now`` — None: do not judge leases yet, for this
    process has not been connected long enough to know who renewed — and the claims of
    ``host``'s (default: this host's) dead workers; returns how many were released."""
    n = 0 if lease is None else claims.release_expired(conn, lease, now, max_attempts)
    dead = dead_workers(conn, host or identity.hostname())
    if dead:
        n += release_dead(conn, dead, "worker process died while running this job", now, max_attempts)
    return n


def _settle_journaled(conn: Connection, name: str, now: datetime) -> None:
    parsed = identity.parse(name)
    if parsed is None or parsed[0] != identity.hostname() or not ours(conn, parsed[1]):
        return  # another host's journal is out of reach: its jobs may just run again
    file = journal.path(conn.engine.url, parsed[1])
    entries = journal.read(file)
    if entries is None:
        return
    started, finished = entries
    for start in range(0, len(finished), 500):
        conn.execute(_delete_journaled, {"ids": finished[start:start + 500], "name": name})
    if started:
        conn.execute(_refund_but, {"name": name, "now": now, "started": sorted(started)})
    else:
        conn.execute(_refund_all, {"name": name, "now": now})
    journal.discard(file)
