"""The SQL that claims, completes, fails and releases jobs — per dialect where it must differ.

Every method takes a connection inside a transaction the caller commits; each
statement states what it guarantees. All times are naive UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, text

from djctl.queue.schema import Timestamp

_COLUMNS = "id, handler, attempts, priority, run_at, queue, reoccur_in, cron"

SET_LOCK = (
    "locked_at = :now, locked_by = :me, attempts = attempts + 1, updated_at = :now, "
    # A unique key held while queued is free once its job starts.
    "unique_key = CASE WHEN unique_while = 'running' THEN unique_key END"
)
"""What a claim writes on each row it takes (the gated claim too)."""


PAUSED = ("AND NOT EXISTS (SELECT 1 FROM djctl_paused_queues "
          "WHERE djctl_paused_queues.queue IN (COALESCE(delayed_jobs.queue, :default_queue), '*'))")
"""The claim's condition that the job's queue is not paused (``*`` pauses every queue).
The paused table is tiny and read without a lock (a plain subquery under FOR UPDATE
locks nothing on MySQL or PostgreSQL), so pausing never waits for a claim, nor a claim
for a pause."""


@dataclass(frozen=True)
class ClaimedJob:
    """A row this worker holds the lock on; ``attempts`` already counts this run."""

    id: int
    handler: str
    attempts: int
    priority: int
    run_at: datetime
    queue: str | None
    reoccur_in: int | None
    cron: str | None

    @property
    def recurring(self) -> bool:
        return self.reoccur_in is not None or self.cron is not None


@dataclass(frozen=True)
class Filter:
    """Which jobs a worker takes: named queues (None: every queue) and a priority range.

    Naming ``default_queue`` also takes jobs stored with no queue, as an older djctl
    wrote them (say, from a web process not yet restarted after an upgrade).
    """

    queues: tuple[str, ...] | None = None
    min_priority: int | None = None
    max_priority: int | None = None
    default_queue: str = "default"

    def sql(self) -> str:
        # Never a job of a paused queue (djctl pause): read in the claim's own statement,
        # so a pause holds from the next claim of every worker on every host.
        parts = [PAUSED]
        if self.queues is not None:
            if self.default_queue in self.queues:
                parts.append("AND (queue IN :queues OR queue IS NULL)")
            else:
                parts.append("AND queue IN :queues")
        if self.min_priority is not None:
            parts.append("AND priority >= :min_priority")
        if self.max_priority is not None:
            parts.append("AND priority <= :max_priority")
        return " ".join(parts)

    def params(self) -> dict:
        out: dict = {"default_queue": self.default_queue}
        if self.queues is not None:
            out["queues"] = list(self.queues)
        if self.min_priority is not None:
            out["min_priority"] = self.min_priority
        if self.max_priority is not None:
            out["max_priority"] = self.max_priority
        return out


LEFT = "left: no app configured"
"""``locked_by`` of a job that a worker with no app configured gave back unrun (``locked_at`` NULL)."""


def _stmt(sql: str, *expanding: str):
    stmt = text(sql).bindparams(
        *(bindparam(n, expanding=True) for n in expanding),
    )
    binds = {name for name in ("now", "expired", "run_at", "failed_at", "since") if f":{name}" in sql}
    if binds:
        stmt = stmt.bindparams(*(bindparam(n, type_=Timestamp) for n in binds))
    if _COLUMNS in sql:
        # Without a result type, SQLite hands back run_at as text; recurrence does arithmetic on it.
        return stmt.columns(run_at=Timestamp)
    return stmt


def _rows(result) -> list[ClaimedJob]:
    jobs = [ClaimedJob(*row) for row in result]
    jobs.sort(key=lambda j: (j.priority, j.run_at, j.id))
    return jobs


class Claims:
    """Claims and their outcomes for the worker named ``locked_by`` (``host:<h> pid:<p>``)."""

    def __init__(self, dialect: str, locked_by: str, flt: Filter = Filter()):
        self.dialect = dialect
        self.locked_by = locked_by
        self.filter = flt
        self._prepare_claim(dialect, flt)
        self._delete = _stmt(
            "DELETE FROM delayed_jobs WHERE id IN :ids AND locked_by = :me", "ids"
        )
        if dialect in ("postgresql", "sqlite"):
            self._delete_returning = _stmt(
                "DELETE FROM delayed_jobs WHERE id IN :ids AND locked_by = :me RETURNING id", "ids"
            )
        else:
            self._mine = _stmt(
                "SELECT id FROM delayed_jobs WHERE id IN :ids AND locked_by = :me FOR UPDATE", "ids"
            )
        fail = (
            "UPDATE delayed_jobs SET locked_at = NULL, locked_by = NULL, last_error = :error, "
            "run_at = :run_at, failed_at = :failed_at, updated_at = :now{} "
            "WHERE id = :id AND locked_by = :me"
        )
        self._fail = _stmt(fail.format(""))
        # Failed for good: its unique key is free for a new job.
        self._give_up = _stmt(fail.format(", unique_key = NULL"))
        self._destroy = _stmt("DELETE FROM delayed_jobs WHERE id = :id AND locked_by = :me")
        self._reschedule = _stmt(
            "UPDATE delayed_jobs SET locked_at = NULL, locked_by = NULL, attempts = 0, "
            "run_at = :run_at, last_run_at = :now, last_error = :error, updated_at = :now "
            "WHERE id = :id AND locked_by = :me"
        )
        self._release = _stmt(
            "UPDATE delayed_jobs SET locked_at = NULL, locked_by = NULL, "
            "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = :now "
            "WHERE id IN :ids AND locked_by = :me",
            "ids",
        )
        # A job left keeps a mark in locked_by (never a worker's name, and locked_at stays
        # NULL, so any worker may claim it and the claim overwrites the mark): stats and
        # the console count the jobs waiting for a worker with an app from that index.
        self._leave = _stmt(
            f"UPDATE delayed_jobs SET locked_at = NULL, locked_by = '{LEFT}', last_error = :error, "
            "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = :now "
            "WHERE id = :id AND locked_by = :me"
        )
        self._watch = _stmt(
            "SELECT id, locked_by, CASE WHEN locked_by = :me THEN NULL "
            "ELSE COALESCE(SUBSTR(last_error, 1, 500), '') END FROM delayed_jobs WHERE id IN :ids", "ids")
        renew = "UPDATE delayed_jobs SET locked_at = :now WHERE id IN :ids AND locked_by = :me"
        if dialect in ("postgresql", "sqlite"):
            self._renew = _stmt(renew + " RETURNING id", "ids")
        else:
            self._held = _stmt("SELECT id FROM delayed_jobs WHERE id IN :ids AND locked_by = :me FOR UPDATE", "ids")
            self._renew = _stmt(renew, "ids")

    def _prepare_claim(self, dialect: str, flt: Filter) -> None:
        """The claim statement(s) of ``dialect``: one UPDATE ... RETURNING where the
        database has it, else SELECT ... FOR UPDATE SKIP LOCKED and an UPDATE."""
        # Gated jobs (concurrency limits, throttles) are claimed through their gate only:
        # see gates.py. The claim indexes hold no gated row, so none is walked past here.
        where = (
            "failed_at IS NULL AND locked_at IS NULL AND gate IS NULL AND run_at <= :now " + flt.sql()
        )
        expanding = ("queues",) if flt.queues is not None else ()
        set_lock = SET_LOCK
        if dialect == "postgresql":
            self._claim = _stmt(
                f"UPDATE delayed_jobs SET {set_lock} WHERE id IN ("
                f"SELECT id FROM delayed_jobs WHERE {where} ORDER BY priority, run_at "
                f"LIMIT :limit FOR UPDATE SKIP LOCKED) RETURNING {_COLUMNS}",
                *expanding,
            )
            # One statement, so one round trip and one commit: finished jobs go as the
            # next ones are claimed (the claim cannot see the deleted rows, which this
            # worker holds anyway).
            # The deleted ids come back too (with no handler), so that a completion whose
            # claim was taken over meanwhile is known as lost rather than reported done.
            self._complete_and_claim = _stmt(
                "WITH done AS (DELETE FROM delayed_jobs WHERE id IN :done AND locked_by = :me RETURNING id), "
                f"claimed AS (UPDATE delayed_jobs SET {set_lock} WHERE id IN ("
                f"SELECT id FROM delayed_jobs WHERE {where} ORDER BY priority, run_at "
                f"LIMIT :limit FOR UPDATE SKIP LOCKED) RETURNING {_COLUMNS}) "
                f"SELECT {_COLUMNS} FROM claimed UNION ALL "
                "SELECT id, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM done",
                "done",
                *expanding,
            )
        elif dialect == "sqlite":
            # The caller's transaction is BEGIN IMMEDIATE: no other writer can interleave.
            self._claim = _stmt(
                f"UPDATE delayed_jobs SET {set_lock} WHERE id IN ("
                f"SELECT id FROM delayed_jobs WHERE {where} ORDER BY priority, run_at "
                f"LIMIT :limit) RETURNING {_COLUMNS}",
                *expanding,
            )
        else:
            self._select = _stmt(
                f"SELECT {_COLUMNS} FROM delayed_jobs WHERE {where} ORDER BY priority, run_at "
                f"LIMIT :limit FOR UPDATE SKIP LOCKED",
                *expanding,
            )
            self._lock = _stmt(f"UPDATE delayed_jobs SET {set_lock} WHERE id IN :ids", "ids")

    def claim(self, conn: Connection, limit: int, now: datetime, complete: Sequence[int] = ()) -> list[ClaimedJob]:
        """Lock up to ``limit`` ready jobs for this worker, counting an attempt on each.

        Ready: run_at <= now, not failed, not locked. Highest priority (lowest number)
        first, then oldest run_at. Two workers never get the same row. The finished
        jobs ``complete`` are deleted first, as by :meth:`complete`.
        """
        return self.complete_and_claim(conn, limit, now, complete)[0]

    def complete_and_claim(self, conn: Connection, limit: int, now: datetime,
                           complete: Sequence[int] = ()) -> tuple[list[ClaimedJob], set[int]]:
        """:meth:`claim`, also returning which of ``complete`` were deleted (this worker
        still held them); the others' claims were lost, their outcome not recorded."""
        params = {"now": now, "me": self.locked_by, "limit": limit, **self.filter.params()}
        if complete and self.dialect == "postgresql":
            rows = list(conn.execute(self._complete_and_claim, {**params, "done": list(complete)}))
            return _rows(r for r in rows if r[1] is not None), {r[0] for r in rows if r[1] is None}
        done = self.completed(conn, complete)
        if self.dialect in ("postgresql", "sqlite"):
            return _rows(conn.execute(self._claim, params)), done
        jobs = _rows(conn.execute(self._select, params))
        if jobs:
            conn.execute(self._lock, {"ids": [j.id for j in jobs], "now": now, "me": self.locked_by})
            jobs = [
                ClaimedJob(j.id, j.handler, j.attempts + 1, j.priority, j.run_at, j.queue, j.reoccur_in, j.cron)
                for j in jobs
            ]
        return jobs, done

    def completed(self, conn: Connection, ids: Sequence[int]) -> set[int]:
        """Delete finished jobs that this worker still holds; returns the ids deleted."""
        if not ids:
            return set()
        params = {"ids": list(ids), "me": self.locked_by}
        if self.dialect in ("postgresql", "sqlite"):
            return set(conn.scalars(self._delete_returning, params))
        held = set(conn.scalars(self._mine, params))
        if held:
            conn.execute(self._delete, {"ids": list(held), "me": self.locked_by})
        return held

    def complete(self, conn: Connection, ids: Sequence[int]) -> int:
        """Delete finished jobs that this worker still holds; returns how many it deleted."""
        if not ids:
            return 0
        return conn.execute(self._delete, {"ids": list(ids), "me": self.locked_by}).rowcount

    def fail(
        self,
        conn: Connection,
        job_id: int,
        error: str,
        now: datetime,
        retry_at: datetime | None,
        destroy: bool = False,
    ) -> bool:
        """Record a failed run: reschedule at ``retry_at``, or mark failed (or delete) when it is None.

        Changes nothing unless this worker still holds the job.
        """
        if retry_at is None and destroy:
            return conn.execute(self._destroy, {"id": job_id, "me": self.locked_by}).rowcount == 1
        params = {
            "id": job_id,
            "me": self.locked_by,
            "error": error,
            "now": now,
            "run_at": retry_at if retry_at is not None else now,
            "failed_at": None if retry_at is not None else now,
        }
        return conn.execute(self._fail if retry_at is not None else self._give_up, params).rowcount == 1

    def reschedule(
        self, conn: Connection, job_id: int, next_run: datetime, now: datetime, error: str | None
    ) -> bool:
        """A recurring job's run is over (well or not): unlock it for its next period."""
        params = {"id": job_id, "me": self.locked_by, "run_at": next_run, "now": now, "error": error}
        return conn.execute(self._reschedule, params).rowcount == 1

    def release(self, conn: Connection, ids: Sequence[int], now: datetime) -> int:
        """Give back claimed jobs that never started, taking back the attempt the claim counted."""
        if not ids:
            return 0
        return conn.execute(self._release, {"ids": list(ids), "me": self.locked_by, "now": now}).rowcount

    def leave(self, conn: Connection, job_id: int, error: str, now: datetime) -> bool:
        """Give back a job this worker may not run, as :meth:`release` does (same run_at,
        attempt refunded), noting ``error`` as the reason; nothing unless still held."""
        params = {"id": job_id, "me": self.locked_by, "error": error, "now": now}
        return conn.execute(self._leave, params).rowcount == 1

    def renew(self, conn: Connection, ids: Sequence[int], now: datetime) -> set[int]:
        """Renew this worker's lease on the claims ``ids`` (waiting or running); returns those
        still held. A claim is taken over only once its lease has gone unrenewed for
        heartbeat_timeout; one no longer held must not be started, or must be stopped.
        """
        if not ids:
            return set()
        if self.dialect in ("postgresql", "sqlite"):
            return set(conn.scalars(self._renew, {"ids": list(ids), "me": self.locked_by, "now": now}))
        held = set(conn.scalars(self._held, {"ids": list(ids), "me": self.locked_by}))
        if held:
            conn.execute(self._renew, {"ids": list(held), "me": self.locked_by, "now": now})
        return held

    def lost(self, conn: Connection, ids: Sequence[int]) -> dict[int, str | None]:
        """Of the claims ``ids``, those this worker no longer holds (a read, no lock): each
        with the start of its row's last_error ('' for none), or None when the row is gone.
        A running job among them must be stopped: it was cancelled, cleared or taken over."""
        if not ids:
            return {}
        rows = {i: (by, error) for i, by, error in conn.execute(self._watch, {"ids": list(ids), "me": self.locked_by})}
        return {i: rows[i][1] if i in rows else None for i in ids if i not in rows or rows[i][0] != self.locked_by}


# A job that ends failed here frees its unique key (SET sees the row's old values).
_FREE_KEY = (
    "unique_key = CASE WHEN attempts >= :max_attempts AND reoccur_in IS NULL AND cron IS NULL THEN NULL "
    "ELSE unique_key END, "
)
_release_dead = _stmt(
    "UPDATE delayed_jobs SET locked_at = NULL, locked_by = NULL, last_error = :error, "
    "failed_at = CASE WHEN attempts >= :max_attempts AND reoccur_in IS NULL AND cron IS NULL THEN :now "
    # run_at = run_at: on PostgreSQL the NOTIFY trigger (UPDATE OF run_at) wakes idle
    # workers, for the released job and for the slot of its concurrency key.
    "ELSE NULL END, " + _FREE_KEY + "run_at = run_at, updated_at = :now "
    "WHERE locked_by IN :names AND failed_at IS NULL",
    "names",
)
_release_expired = _stmt(
    "UPDATE delayed_jobs SET locked_at = NULL, locked_by = NULL, "
    "last_error = 'lease expired: its worker stopped renewing it and is presumed dead', "
    "failed_at = CASE WHEN attempts >= :max_attempts AND reoccur_in IS NULL AND cron IS NULL THEN :now "
    "ELSE NULL END, " + _FREE_KEY + "updated_at = :now "
    "WHERE locked_at < :expired AND failed_at IS NULL"
)


def release_dead(
    conn: Connection, names: Sequence[str], error: str, now: datetime, max_attempts: int
) -> int:
    """Release every claim held by the dead workers ``names``; the attempt stays counted.
    (The journals of this host's dead workers are settled first by worker/recovery.py.)

    A job that has used up its attempts this way is marked failed rather than released,
    so a job that kills its worker every time ends failed instead of looping. A recurring
    job never ends failed: its attempts stay counted, so the next claim finds them spent,
    and the worker gives up that period and reschedules it for the next one.
    """
    if not names:
        return 0
    params = {"names": list(names), "error": error, "now": now, "max_attempts": max_attempts}
    return conn.execute(_release_dead, params).rowcount


def release_expired(conn: Connection, lease: timedelta, now: datetime, max_attempts: int) -> int:
    """Release claims whose lease was last renewed more than ``lease`` (heartbeat_timeout)
    before ``now`` (the database's time): a live worker renews its claims every
    heartbeat_interval, and one that cannot has stopped its job before this."""
    params = {"expired": now - lease, "now": now, "max_attempts": max_attempts}
    return conn.execute(_release_expired, params).rowcount

