"""The worker's side of the database: one transaction per round, in which it records the
outcomes that arrived, renews the claims it holds but has not started, releases what dead
workers left behind, and claims the next jobs — so a slow commit never idles the executor
and fast jobs share commits.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from djctl import api, clock
from djctl.queue.claims import ClaimedJob, Claims
from djctl.recurrence import next_run
from djctl.worker import recovery
from djctl.worker.messages import Outcome

_mine = text("SELECT id FROM delayed_jobs WHERE locked_by = :me")


@dataclass(frozen=True)
class Round:
    """What one round does. ``claim`` jobs are claimed (0: none); with ``maintenance``,
    the claims ``waiting`` (held, not started) are renewed and dead workers' released.
    ``known`` is every claim the worker knows it holds: after a failed round, any other
    row locked in its name was claimed without its hearing of it, and goes back.
    ``release`` are claims it gives back unstarted, for another worker to run."""

    outcomes: Sequence[Outcome] = ()
    claim: int = 0
    maintenance: bool = False
    waiting: Sequence[int] = ()
    known: Collection[int] = ()
    release: Sequence[int] = ()


@dataclass(frozen=True)
class Claimed:
    """What a round got: the jobs it claimed, and (after maintenance) which of the waiting
    claims are still held — None when it did not look."""

    jobs: list[ClaimedJob] = field(default_factory=list)
    held: set[int] | None = None


class Rounds:
    """One worker's connection and its rounds. Every method raises DBAPIError when the
    database fails; the connection is then dropped and the next round reconnects."""

    def __init__(self, database_url: str, claims: Claims, *, max_run_time: timedelta,
                 max_attempts: int, destroy_failed: bool) -> None:
        self.database_url = database_url
        self.claims = claims
        self.max_run_time = max_run_time
        self.max_attempts = max_attempts
        self.destroy_failed = destroy_failed
        self.unsure = False
        """A round failed: a claim may have committed without our hearing of it."""
        self._conn: Connection | None = None

    def run(self, r: Round) -> Claimed:
        """One transaction: record ``r.outcomes``, then maintenance, then the claim."""
        conn = self._connection()
        now = clock.utcnow()
        jobs: list[ClaimedJob] = []
        held = None
        try:
            with conn.begin():
                done = self._record(conn, r.outcomes, now, claiming=r.claim > 0)
                self.claims.release(conn, r.release, now)
                if self.unsure:
                    mine = [i for (i,) in conn.execute(_mine, {"me": self.claims.locked_by}) if i not in r.known]
                    self.claims.release(conn, mine, now)
                if r.maintenance:
                    if r.waiting:
                        held = self.claims.renew(conn, r.waiting, now)
                    recovery.recover(conn, now, self.max_run_time, self.max_attempts)
                if r.claim > 0:
                    jobs = self.claims.claim(conn, r.claim, now, complete=done)
        except Exception:
            self.drop()
            self.unsure = True
            raise
        self.unsure = False
        return Claimed(jobs, held)

    def finish(self, outcomes: Sequence[Outcome], unstarted: Sequence[int]) -> None:
        """The last round: record ``outcomes`` and give back the claims ``unstarted``."""
        conn = self._connection()
        now = clock.utcnow()
        try:
            with conn.begin():
                self._record(conn, outcomes, now)
                self.claims.release(conn, unstarted, now)
        except Exception:
            self.drop()
            raise

    def drop(self) -> None:
        """Forget the connection (it failed, or the worker is done)."""
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
                claiming: bool = False) -> list[int]:
        """Write every outcome but the plain successes when ``claiming`` (the claim deletes
        those); returns the successes' ids."""
        done = [o.job.id for o in outcomes if o.ok and not o.job.recurring]
        if not claiming:
            self.claims.complete(conn, done)
        for o in outcomes:
            if o.left:
                self.claims.leave(conn, o.job.id, o.error or "", now)
            elif o.job.recurring:
                self.claims.reschedule(conn, o.job.id, next_run(o.job, now), now, o.error)
            elif not o.ok:
                self.claims.fail(conn, o.job.id, o.error or "", now, o.retry_at, self.destroy_failed)
        return done
