"""The worker's side of the database: one transaction per round, in which it records the
outcomes that arrived, renews the claims it holds but has not started, releases what dead
workers left behind, and claims the next jobs — so a slow commit never idles the executor
and fast jobs share commits.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, text

from djctl import api, clock
from djctl.queue import doorbell
from djctl.queue.claims import ClaimedJob, Claims
from djctl.queue.gates import Gates
from djctl.recurrence import next_run
from djctl.worker import recovery
from djctl.worker.messages import Outcome


def _read_clock(conn: Connection) -> None:
    """Read the database's clock again (it was read at connect): local clocks drift."""
    sql = clock.query(conn.dialect.name)
    if sql is not None:
        sent = time.monotonic()
        value = conn.exec_driver_sql(sql).scalar()
        clock.observe(value, sent, time.monotonic())


_exists = text("SELECT id FROM delayed_jobs WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))
_mine = text("SELECT id FROM delayed_jobs WHERE locked_by = :me")


@dataclass(frozen=True)
class Round:
    """What one round does. ``claim`` jobs are claimed (0: none); with ``renew``, the
    leases on the claims ``waiting`` (held: waiting or running) are renewed; with
    ``maintenance``, dead workers' claims and expired leases are released.
    ``known`` is every claim the worker knows it holds: after a failed round, any other
    row locked in its name was claimed without its hearing of it (or was given up when
    its lease could not be renewed), and goes back with its attempt refunded.
    ``release`` are claims it gives back unstarted, for another worker to run."""

    outcomes: Sequence[Outcome] = ()
    claim: int = 0
    maintenance: bool = False
    waiting: Sequence[int] = ()
    known: Collection[int] = ()
    renew: bool = False
    release: Sequence[int] = ()


@dataclass(frozen=True)
class Claimed:
    """What a round got: the jobs it claimed, which of the waiting claims are still held
    (None when it did not renew), and the outcomes it could not record because their
    claim had been lost (taken over after its lease expired)."""

    jobs: list[ClaimedJob] = field(default_factory=list)
    held: set[int] | None = None
    lost: set[int] = field(default_factory=set)


class Rounds:
    """One worker's connection and its rounds. Every method raises DBAPIError when the
    database fails; the connection is then dropped and the next round reconnects."""

    def __init__(self, database_url: str, claims: Claims, *, lease: timedelta,
                 max_attempts: int, destroy_failed: bool, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.database_url = database_url
        self.claims = claims
        self.gates = Gates(claims.dialect, claims.locked_by, claims.filter)
        self.lease = lease
        self.max_attempts = max_attempts
        self.destroy_failed = destroy_failed
        self.monotonic = monotonic
        self.unsure = False
        """A round failed: a claim may have committed without our hearing of it."""
        self._conn: Connection | None = None
        self._connected_since: float | None = None

    def run(self, r: Round) -> Claimed:
        """One transaction: record ``r.outcomes``, renew, then maintenance, then the claim."""
        conn = self._connection()
        jobs: list[ClaimedJob] = []
        held = None
        released = 0
        try:
            with conn.begin():
                if r.maintenance:
                    _read_clock(conn)
                now = clock.utcnow()
                done, lost = self._record(conn, r.outcomes, now, claiming=r.claim > 0)
                released = self.claims.release(conn, r.release, now)
                if self.unsure:
                    mine = [i for (i,) in conn.execute(_mine, {"me": self.claims.locked_by}) if i not in r.known]
                    released += self.claims.release(conn, mine, now)
                if released:
                    doorbell.notify(conn)  # jobs given back for another worker: wake an idle one
                if r.renew:
                    held = self.claims.renew(conn, r.waiting, now)
                if r.maintenance:
                    recovery.recover(conn, now, self.lease if self._judging() else None, self.max_attempts)
                if r.claim > 0:
                    jobs, deleted = self.claims.complete_and_claim(conn, r.claim, now, complete=done)
                    if self.gates.due(len(jobs), r.claim):
                        jobs += self.gates.claim(conn, max(r.claim - len(jobs), 1), now)
                    lost |= self._still_there(conn, set(done) - deleted)
        except Exception:
            self.drop()
            self.unsure = True
            raise
        self.unsure = False
        if released:
            doorbell.ring_for(self.database_url)
        if self._connected_since is None:
            self._connected_since = self.monotonic()
        return Claimed(jobs, held, lost)

    def lost(self, ids: Sequence[int]) -> dict[int, str | None]:
        """A read of its own (on SQLite, without the write lock): which of the claims
        ``ids`` this worker no longer holds, as :meth:`Claims.lost`."""
        conn = self._connection()
        try:
            conn.execution_options(sqlite_read=True)
            with conn.begin():
                return self.claims.lost(conn, ids)
        except Exception:
            self.drop()
            raise
        finally:
            conn.execution_options(sqlite_read=False)

    def _judging(self) -> bool:
        """Whether this worker may judge others' leases: only once it has been connected
        for a whole lease, for while it was cut off it could not see their renewals."""
        since = self._connected_since
        return since is not None and self.monotonic() - since >= self.lease.total_seconds()

    def finish(self, outcomes: Sequence[Outcome], unstarted: Sequence[int]) -> set[int]:
        """The last round: record ``outcomes`` and give back the claims ``unstarted``;
        returns the outcomes not recorded because their claim was lost."""
        conn = self._connection()
        now = clock.utcnow()
        try:
            with conn.begin():
                _, lost = self._record(conn, outcomes, now)
                give_back = list(unstarted)
                if self.unsure:  # a job given up at a fence, or a claim whose answer was lost
                    keep = {o.job.id for o in outcomes} | set(give_back)
                    give_back += [i for (i,) in conn.execute(_mine, {"me": self.claims.locked_by}) if i not in keep]
                self.claims.release(conn, give_back, now)
        except Exception:
            self.drop()
            raise
        self.unsure = False
        return lost

    def drop(self) -> None:
        """Forget the connection (it failed, or the worker is done)."""
        self._connected_since = None
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:  # noqa: BLE001 - it is already broken
                pass
            self._conn = None

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = api.engine(self.database_url).connect()
            if conn.dialect.name == "postgresql":
                # Every statement of the worker's is safe on its own (each checks the
                # claim it acts on), so each commits by itself: one round trip, not three.
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
        return self._conn

    def _record(self, conn: Connection, outcomes: Sequence[Outcome], now: datetime,
                claiming: bool = False) -> tuple[list[int], set[int]]:
        """Write every outcome but the plain successes when ``claiming`` (the claim deletes
        those); returns the successes' ids, and the outcomes not written because this
        worker no longer held their claim."""
        done = [o.job.id for o in outcomes if o.ok and not o.job.recurring]
        lost: set[int] = set()
        if not claiming:
            lost |= set(done) - self.claims.completed(conn, done)
            lost = self._still_there(conn, lost)
        for o in outcomes:
            if o.left:
                written = self.claims.leave(conn, o.job.id, o.error or "", now)
            elif o.job.recurring:
                written = self.claims.reschedule(conn, o.job.id, next_run(o.job, now), now, o.error)
            elif not o.ok:
                written = self.claims.fail(conn, o.job.id, o.error or "", now, o.retry_at, self.destroy_failed)
            else:
                continue
            if not written:
                lost.add(o.job.id)
        return done, lost

    def _still_there(self, conn: Connection, ids: set[int]) -> set[int]:
        """Of the completions ``ids`` whose DELETE matched nothing, those whose row still
        exists: their claim was lost. A row already gone was deleted by a round of ours
        whose commit we did not hear of (the connection dropped) — recorded after all."""
        if not ids:
            return ids
        return set(conn.scalars(_exists, {"ids": sorted(ids)}))

    def interrupt(self) -> None:
        """From another thread: break the connection under a round that hangs (a silent
        partition holds every byte, and no driver times out a read by itself), so that
        the round fails now rather than after the kernel gives up, minutes later."""
        conn = self._conn
        try:
            raw = conn.connection.dbapi_connection if conn is not None else None
            fd = raw.fileno() if raw is not None and hasattr(raw, "fileno") else None
            if fd is None and raw is not None and getattr(raw, "_sock", None) is not None:
                fd = raw._sock.fileno()
        except Exception:  # noqa: BLE001 - nothing to break
            return
        if fd is not None and fd >= 0:
            with contextlib.suppress(OSError):
                socket.socket(fileno=os.dup(fd)).shutdown(socket.SHUT_RDWR)
