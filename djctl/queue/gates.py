"""Gated claims: concurrency limits and throttles, enforced by the database at claim time.

A job with a concurrency key or a throttle has a *gate*, ``concurrency:<key>`` (else
``throttle:<key>``), and the plain claim never takes it: the claim indexes hold no gated
row, so a thousand jobs waiting on a busy key are never walked past by anyone else.

After the plain claim, a worker finds the gates that have a ready job (one index probe
per gate, however many jobs wait behind it), locks their rows in ``djctl_gates``
(skipping any another worker is claiming through at this moment: nobody waits), counts
what each gate holds now, and claims what fits. Holding the gate's row makes the count
and the claim one step, so two workers never both take a gate's last slot.

What a gate holds is counted from the jobs themselves (locked and not failed): a slot is
free as soon as its job is completed, failed, given back or released by the recovery of
its dead worker — by the same statements as any claim, so no slot can leak. A throttle
counts the starts it admitted (``djctl_throttle_starts``) within its period.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from djctl.queue.claims import _COLUMNS, SET_LOCK, ClaimedJob, Filter, _rows, _stmt

CONCURRENCY = "concurrency:"
THROTTLE = "throttle:"

MOST_GATES = 100
"""Gates looked at per claim; past that many with ready jobs, a random share each time."""

DUE_EVERY = 0.25
"""Seconds: a worker whose plain claims keep filling up still looks at its gates this often."""

THROTTLE_MARGIN = timedelta(milliseconds=250)
"""A start is counted when its job is claimed, a moment before it runs: the throttle's
window is this much longer than its period, so that no period sees more starts than its
limit even when a claimed job waits briefly for its worker's executor. (A worker claims
one job per throttle per look, so its throttled claims never queue behind each other.)"""


def concurrency_gate(key: str) -> str:
    return CONCURRENCY + key


def throttle_gate(key: str) -> str:
    return THROTTLE + key


def describe(gate: str | None) -> str | None:
    """What a waiting job waits for, in the words ``jobs`` and the console use."""
    if gate is None:
        return None
    if gate.startswith(CONCURRENCY):
        return f"a slot of {gate[len(CONCURRENCY):]}"
    return f"the throttle {gate[len(THROTTLE):]}"


@dataclass
class _Pick:
    id: int
    limit: int | None
    throttle: str | None
    throttle_limit: int | None
    period_ms: int | None


class Gates:
    """The gated claim of the worker named ``locked_by``, for the jobs ``flt`` selects."""

    def __init__(self, dialect: str, locked_by: str, flt: Filter | None = None):
        flt = flt or Filter()
        self.dialect = dialect
        self.locked_by = locked_by
        self.filter = flt
        self._checked = float("-inf")
        self._after = ""  # where the next look at the gates starts: every gate gets its turn
        ready = "failed_at IS NULL AND locked_at IS NULL AND run_at <= :now " + flt.sql()
        expanding = ("queues",) if flt.queues is not None else ()
        # A loose index scan: the next gate after the last, one probe each.
        self._candidates = _stmt(
            "WITH RECURSIVE g(gate, n) AS ("
            f"SELECT (SELECT MIN(gate) FROM delayed_jobs WHERE gate > :after AND {ready}), 1 "
            "UNION ALL "
            # Unaliased: the filter's paused-queues condition names delayed_jobs.queue.
            f"SELECT (SELECT MIN(delayed_jobs.gate) FROM delayed_jobs WHERE delayed_jobs.gate > g.gate AND {ready}), "
            "g.n + 1 "
            "FROM g WHERE g.gate IS NOT NULL AND g.n < :most) "
            "SELECT gate FROM g WHERE gate IS NOT NULL",
            *expanding,
        )
        skip = " ORDER BY name FOR UPDATE SKIP LOCKED" if dialect != "sqlite" else ""
        self._lock = _stmt(f"SELECT name FROM djctl_gates WHERE name IN :names{skip}", "names")
        self._held = _stmt(
            "SELECT gate, COUNT(*), MIN(concurrency_limit) FROM delayed_jobs WHERE gate IN :gates "
            "AND locked_at IS NOT NULL AND failed_at IS NULL GROUP BY gate",
            "gates",
        )
        self._pick = _stmt(
            "SELECT id, concurrency_limit, throttle_key, throttle_limit, throttle_period_ms "
            f"FROM delayed_jobs WHERE gate = :gate AND {ready} ORDER BY priority, run_at, id LIMIT :n",
            *expanding,
        )
        self._starts = _stmt("SELECT COUNT(*) FROM djctl_throttle_starts WHERE name = :name AND started_at > :since")
        self._forget = _stmt("DELETE FROM djctl_throttle_starts WHERE name = :name AND started_at <= :since")
        self._start = _stmt("INSERT INTO djctl_throttle_starts (name, started_at) VALUES (:name, :now)")
        self._read = _stmt(f"SELECT {_COLUMNS} FROM delayed_jobs WHERE id IN :ids", "ids")
        self._take = _stmt(
            f"UPDATE delayed_jobs SET {SET_LOCK} WHERE id IN :ids AND locked_at IS NULL AND failed_at IS NULL",
            "ids",
        )

    def due(self, claimed: int, wanted: int) -> bool:
        """Whether to look at the gates after a plain claim that got ``claimed`` of ``wanted``."""
        return claimed < wanted or time.monotonic() - self._checked >= DUE_EVERY

    def claim(self, conn: Connection, limit: int, now: datetime) -> list[ClaimedJob]:
        """Claim up to ``limit`` gated jobs that their gates admit now, counting an attempt
        on each, highest priority first within a gate. Gates another worker is claiming
        through at this moment are skipped, not waited for."""
        self._checked = time.monotonic()
        params = {"now": now, **self.filter.params()}
        gates = self._candidates_from(conn, params)
        if not gates or limit <= 0:
            return []
        random.shuffle(gates)  # no gate always first: each gets its turn
        with _transaction(conn):
            locked = set(conn.scalars(self._lock, {"names": gates}))
            held = {g: (int(n), lim) for g, n, lim in conn.execute(self._held, {"gates": sorted(locked)})}
            # A gate whose jobs hold its limit already has nothing to give: not even looked into.
            locked -= {g for g, (n, lim) in held.items() if lim is not None and n >= lim}
            taken: list[int] = []
            throttles = _Throttles(self, conn, locked, now)
            for gate in (g for g in gates if g in locked):
                if len(taken) >= limit:
                    break
                taken += self._admit(conn, gate, held.get(gate, (0, None))[0], limit - len(taken), params, throttles)
            if not taken:
                return []
            jobs = _rows(conn.execute(self._read, {"ids": taken}))
            conn.execute(self._take, {"ids": taken, "now": now, "me": self.locked_by})
            throttles.record()
        return [ClaimedJob(j.id, j.handler, j.attempts + 1, j.priority, j.run_at, j.queue, j.reoccur_in, j.cron)
                for j in jobs]

    def _candidates_from(self, conn: Connection, params: dict) -> list[str]:
        """Up to MOST_GATES gates with a ready job, from where the last look stopped,
        around to the start again: past that many, each look takes the next ones."""
        gates = list(conn.scalars(self._candidates, {**params, "most": MOST_GATES, "after": self._after}))
        if len(gates) >= MOST_GATES:
            self._after = gates[-1]
            return gates
        if self._after:
            seen = set(gates)
            more = conn.scalars(self._candidates, {**params, "most": MOST_GATES - len(gates), "after": ""})
            gates += [g for g in more if g not in seen]
        self._after = ""
        return gates

    def _admit(self, conn: Connection, gate: str, held: int, want: int, params: dict,
               throttles: _Throttles) -> list[int]:
        picks = [_Pick(*row) for row in conn.execute(self._pick, {**params, "gate": gate, "n": want})]
        if not picks:
            return []
        if picks[0].limit is not None:
            picks = picks[:max(0, picks[0].limit - held)]
        return [p.id for p in picks if p.throttle is None or throttles.admit(p)]


class _Throttles:
    """The throttles of one gated claim: each locked once, its starts counted once."""

    def __init__(self, gates: Gates, conn: Connection, locked: set[str], now: datetime):
        self.gates, self.conn, self.locked, self.now = gates, conn, locked, now
        self.room: dict[str, int] = {}
        self.admitted: dict[str, int] = {}
        self.since: dict[str, datetime] = {}

    def admit(self, pick: _Pick) -> bool:
        name = throttle_gate(pick.throttle or "")
        if name not in self.room:
            self.room[name] = self._room(name, pick)
        if self.room[name] <= 0 or self.admitted.get(name):
            # One start per throttle per look: a worker runs its claims one after the other,
            # and ten claimed at once would start spread over the time of ten jobs, past
            # the window they were counted in.
            return False
        self.room[name] -= 1
        self.admitted[name] = self.admitted.get(name, 0) + 1
        return True

    def _room(self, name: str, pick: _Pick) -> int:
        if name not in self.locked:
            if not list(self.conn.scalars(self.gates._lock, {"names": [name]})):
                return 0  # another worker is starting jobs of this throttle right now
            self.locked.add(name)
        since = self.now - timedelta(milliseconds=pick.period_ms or 0) - THROTTLE_MARGIN
        self.since[name] = since
        self.conn.execute(self.gates._forget, {"name": name, "since": since})
        started = int(self.conn.scalar(self.gates._starts, {"name": name, "since": since}) or 0)
        return (pick.throttle_limit or 0) - started

    def record(self) -> None:
        for name, n in self.admitted.items():
            self.conn.execute(self.gates._start, [{"name": name, "now": self.now}] * n)


@contextlib.contextmanager
def _transaction(conn: Connection) -> Iterator[None]:
    """The gated claim as one transaction. The worker's PostgreSQL connection commits each
    statement by itself; here the gates' locks must last from the count to the claim."""
    if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        yield  # the caller's transaction
        return
    conn.exec_driver_sql("BEGIN")
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            conn.exec_driver_sql("ROLLBACK")
        raise
    conn.exec_driver_sql("COMMIT")


def gate_names(rows: Sequence[dict]) -> list[str]:
    """The gates (and throttles) the rows to insert need in ``djctl_gates``."""
    names = {r["gate"] for r in rows if r.get("gate")}
    names |= {throttle_gate(r["throttle_key"]) for r in rows if r.get("throttle_key")}
    return sorted(names)


_ENSURE = {
    "postgresql": "INSERT INTO djctl_gates (name) VALUES (:name) ON CONFLICT DO NOTHING",
    "sqlite": "INSERT INTO djctl_gates (name) VALUES (:name) ON CONFLICT DO NOTHING",
}
_ENSURE_MYSQL = "INSERT INTO djctl_gates (name) VALUES (:name) ON DUPLICATE KEY UPDATE name = name"


def ensure(execute: object, dialect: str, names: Sequence[str]) -> None:
    """Make sure each gate of ``names`` has its row, in the caller's transaction."""
    if not names:
        return
    stmt = text(_ENSURE.get(dialect, _ENSURE_MYSQL))
    execute.execute(stmt, [{"name": n} for n in names])  # type: ignore[attr-defined]  # a Connection or a Session
