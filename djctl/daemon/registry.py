"""The supervisor's rows in ``djctl_processes``, and the recovery of claims whose
workers are gone.

Every supervisor writes one row per process on each heartbeat. From those rows:
- a child the supervisor sees die has its claims released at once (the attempt counts);
- on start, the rows a dead supervisor of this host left behind are cleared, and the
  claims of this host's dead workers released;
- claims whose lease has gone unrenewed for ``heartbeat_timeout`` (their worker, or its
  whole host, is gone or cut off) are released by any supervisor on the same database,
  and rows whose heartbeat is that old are removed.
Times are the database's (djctl.clock): hosts' clocks need not agree. A supervisor that
was cut off itself judges no lease until it has been connected for a whole timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, and_, bindparam, delete, or_, select, text
from sqlalchemy.exc import DBAPIError

from djctl import clock
from djctl.clock import utc_naive, utcnow
from djctl.daemon import render
from djctl.daemon.model import ProcessInfo, State
from djctl.errors import one_line
from djctl.queue import claims
from djctl.queue.schema import Timestamp
from djctl.queue.schema import djctl_processes as table
from djctl.worker import identity, recovery

Wall = Callable[[], datetime]

_expired_holders = text(
    "SELECT locked_by, count(*) FROM delayed_jobs WHERE locked_at < :expired AND failed_at IS NULL "
    "GROUP BY locked_by ORDER BY locked_by"
).bindparams(bindparam("expired", type_=Timestamp))


@dataclass(frozen=True)
class Released:
    """``count`` claims of ``worker`` (``host:h pid:p``), process ``name``, were released."""

    name: str
    worker: str
    count: int


class Registry:
    """The rows of one supervisor (``host``, ``supervisor_pid``) and claim recovery.
    Each method is one transaction; all raise DBAPIError when the database fails."""

    def __init__(self, engine: Engine, host: str, supervisor_pid: int, max_attempts: int,
                 wall: Wall = utcnow) -> None:
        self.engine = engine
        self.host = host
        self.supervisor_pid = supervisor_pid
        self.max_attempts = max_attempts
        self._wall = wall

    def publish(self, processes: Sequence[ProcessInfo]) -> None:
        """Make this supervisor's rows exactly ``processes``, heartbeat now (reading the
        database's clock again). A row of the same host and name left by another
        supervisor is taken over."""
        names = [p.name for p in processes]
        t = table.c
        with self.engine.begin() as conn:
            sql = clock.query(conn.dialect.name)
            if sql is not None:
                sent = time.monotonic()
                clock.observe(conn.exec_driver_sql(sql).scalar(), sent, time.monotonic())
            now = self._wall()
            mine = and_(t.host == self.host, or_(t.supervisor_pid == self.supervisor_pid, t.name.in_(names)))
            conn.execute(delete(table).where(mine))
            if processes:
                conn.execute(table.insert(), [self._row(p, now) for p in processes])

    def withdraw(self) -> None:
        """Remove this supervisor's rows (it is stopping)."""
        t = table.c
        with self.engine.begin() as conn:
            conn.execute(delete(table).where(t.host == self.host, t.supervisor_pid == self.supervisor_pid))

    def release(self, pid: int, reason: str) -> int:
        """Release the claims of our child ``pid`` that has died; returns how many."""
        now = self._wall()
        with self.engine.begin() as conn:
            return recovery.release_dead(conn, [identity.format(self.host, pid)], reason, now, self.max_attempts)

    def recover_local(self) -> list[Released]:
        """At start: clear this host's rows whose supervisor is gone, releasing the
        claims of their processes that are dead, then those of any other dead worker
        of this host (``djctl work`` run by hand and killed, say)."""
        now = self._wall()
        t = table.c
        out: list[Released] = []
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(t.id, t.name, t.pid, t.supervisor_pid, t.started_at).where(t.host == self.host)
            ).all()
            orphaned = [r for r in rows
                        if r.supervisor_pid != self.supervisor_pid and not identity.pid_alive(r.supervisor_pid)]
            names = {r.pid: r.name for r in orphaned if r.pid is not None}
            # A twin host of our name has pids that mean nothing here: only workers marked
            # as ours (see identity.py) are judged by their pid.
            dead = [identity.format(self.host, r.pid) for r in orphaned
                    if r.pid is not None and not identity.pid_alive(r.pid, r.started_at)
                    and recovery.ours(conn, r.pid)]
            dead += [w for w in recovery.dead_workers(conn, self.host) if w not in dead]
            for worker in dead:
                n = recovery.release_dead(conn, [worker], "its worker died while the supervisor was down",
                                          now, self.max_attempts)
                if n:
                    parsed = identity.parse(worker)
                    out.append(Released(names.get(parsed[1], "djctl") if parsed else "djctl", worker, n))
            if orphaned:
                conn.execute(delete(table).where(t.id.in_([r.id for r in orphaned])))
        return out

    def recover_stale(self, timeout: float) -> list[Released]:
        """Release every claim whose lease has gone unrenewed for ``timeout`` seconds by the
        database's clock, whoever holds it (a live worker renews every heartbeat_interval,
        and stops its job before its lease can expire); remove the rows of supervisors
        silent as long. Returns what was released, per worker."""
        now = self._wall()
        expired = now - timedelta(seconds=timeout)
        t = table.c
        out: list[Released] = []
        with self.engine.begin() as conn:
            names = {(r.host, r.pid): r.name for r in conn.execute(select(t.host, t.pid, t.name))}
            holders = conn.execute(_expired_holders, {"expired": expired}).all()
            if holders:
                claims.release_expired(conn, timedelta(seconds=timeout), now, self.max_attempts)
            for worker, n in holders:
                parsed = identity.parse(worker) or ("", 0)
                out.append(Released(names.get(parsed, "djctl"), worker, n))
            conn.execute(delete(table).where(
                t.heartbeat_at < expired, or_(t.host != self.host, t.supervisor_pid != self.supervisor_pid)))
        return out

    def _row(self, p: ProcessInfo, now: datetime) -> dict:
        return {
            "host": self.host,
            "pid": p.pid,
            "name": p.name,
            "type": p.type,
            "supervisor_pid": self.supervisor_pid,
            "state": p.state.value,
            "command": p.command,
            "started_at": utc_naive(p.started_at) if p.started_at else None,
            "heartbeat_at": now,
        }


def list_processes(engine: Engine) -> list[ProcessInfo]:
    """Every host's processes, as last heartbeated (times timezone-aware UTC)."""
    t = table.c
    with engine.connect().execution_options(sqlite_read=True) as conn:
        rows = conn.execute(select(table).order_by(t.host, t.type, t.name)).all()
    out = []
    for r in rows:
        beat = r.heartbeat_at.replace(tzinfo=timezone.utc)
        started = r.started_at.replace(tzinfo=timezone.utc) if r.started_at else None
        try:
            state = State(r.state)
        except ValueError:
            state = State.DOWN
        out.append(ProcessInfo(r.name, r.type, r.pid, state, started or beat, r.command, started, r.host, beat))
    return out


def jobs_in_hand(engine: Engine, host: str, pids: Sequence[int]) -> dict[int, list[tuple[int, str]]]:
    """For each worker pid of ``host``, the jobs it holds claimed: (id, name as
    delayed_job shows it), in the order it takes them. Handlers are read as JSON only."""
    import json

    from djctl.handlers import display_name
    from djctl.queue.schema import delayed_jobs as jobs

    owners = {identity.format(host, pid): pid for pid in pids}
    if not owners:
        return {}
    j = jobs.c
    with engine.connect().execution_options(sqlite_read=True) as conn:
        rows = conn.execute(select(j.id, j.handler, j.locked_by).where(j.locked_by.in_(list(owners)))
                            .order_by(j.priority, j.run_at, j.id)).all()
    held: dict[int, list[tuple[int, str]]] = {}
    for row in rows:
        try:
            name = display_name(json.loads(row.handler))
        except (ValueError, TypeError, AttributeError):
            name = "?"
        held.setdefault(owners[row.locked_by], []).append((row.id, name))
    return held


class Heartbeat:
    """Runs a Registry on a thread of its own, so a slow database never stalls the
    supervisor: publishes ``snapshot()`` every ``interval`` seconds and recovers stale
    hosts' claims, and releases the claims of a dead child as soon as :meth:`dead` is
    called. ``say(proc, message)`` reports what it did and database trouble (once per
    outage)."""

    def __init__(self, registry: Registry, interval: float, timeout: float,
                 snapshot: Callable[[], Sequence[ProcessInfo]], say: Callable[[str, str], None]) -> None:
        self.registry = registry
        self.interval = max(interval, 0.05)
        self.timeout = timeout
        self._snapshot = snapshot
        self._say = say
        self._dead: list[tuple[str, int, str]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._failing = False
        self._connected_since: float | None = None
        self.last_beat: float | None = None
        """Unix time of the last heartbeat the database took (for the metrics)."""
        self._thread = threading.Thread(target=self._run, name="djctl-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def dead(self, name: str, pid: int, reason: str) -> None:
        """Child ``name`` (``pid``) is gone: release its claims now."""
        with self._lock:
            self._dead.append((name, pid, reason))
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Release what is pending, remove our rows, and end the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:  # never started: the supervisor failed before its loop
            self._thread.join(timeout)

    def _run(self) -> None:
        next_beat = 0.0
        while True:
            stopping = self._stop.is_set()
            self._guard(self._release_dead)
            if stopping:
                self._guard(self.registry.withdraw)
                return
            now = time.monotonic()
            if now >= next_beat:
                published = self._guard(lambda: self.registry.publish(self._snapshot()))
                if published:
                    self.last_beat = time.time()
                if published and self._judging():
                    self._guard(lambda: self._report(self.registry.recover_stale(self.timeout)))
                next_beat = now + self.interval
            self._wake.wait(max(0.0, next_beat - time.monotonic()))
            self._wake.clear()

    def _release_dead(self) -> None:
        with self._lock:
            pending = list(self._dead)
        for name, pid, reason in pending:
            n = self.registry.release(pid, reason)
            with self._lock:
                self._dead.remove((name, pid, reason))
            if n:
                self._say(name, render.released(n, identity.format(self.registry.host, pid)))

    def _judging(self) -> bool:
        """Whether this supervisor may judge leases: only once connected for a whole
        timeout (after start and after every database error), for while it was cut off it
        could not see the renewals of others who were not."""
        since = self._connected_since
        return since is not None and time.monotonic() - since >= self.timeout

    def _report(self, released: list[Released]) -> None:
        for r in released:
            self._say("djctl", render.released(r.count, r.worker) + f" ({r.name}, lease expired)")

    def _guard(self, action: Callable[[], object]) -> bool:
        try:
            action()
        except DBAPIError as e:
            if not self._failing:
                self._say("djctl", f"Database unavailable ({one_line(e)}); retrying")
            self._failing = True
            self._connected_since = None
            return False
        if self._connected_since is None:
            self._connected_since = time.monotonic()
        if self._failing:
            self._say("djctl", "Database available again")
        self._failing = False
        return True
