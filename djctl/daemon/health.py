"""What the supervisor's probes answer: ``/healthz`` (its loop is alive), ``/readyz`` (the
formation is up and the database answers) and one process's liveness.

Every answer is read from state kept beforehand — the loop publishes a :class:`LoopState`
on each turn, a :class:`DatabaseProbe` thread pings the database on its own — so a probe
answers at once however slow the database is: a ping that does not come back in time
counts as a database that does not answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from djctl.daemon.model import ProcessInfo, State
from djctl.errors import one_line

# The loop turns at least once a second; this long without a turn, it is stuck.
LOOP_STALL = 5.0


@dataclass(frozen=True)
class LoopState:
    """What the supervisor's loop saw on its last turn (``at``: monotonic seconds)."""

    at: float
    processes: tuple[ProcessInfo, ...] = ()
    formation: Mapping[str, int] = field(default_factory=dict)
    steady: bool = False
    stopping: bool = False


@dataclass(frozen=True)
class Answer:
    """A probe's answer: 200 or 503 (404 for a process that is not ours), and one line."""

    status: int
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == 200


class DatabaseProbe:
    """Pings the database (``ping()`` runs one trivial statement) every ``interval``
    seconds on a thread of its own. :meth:`answering` says whether the last success is
    recent; a ping still out after ``stale`` seconds is abandoned to its thread and the
    next one starts on a new thread, so that one connection stuck on a silent network
    never keeps the probe from seeing the database come back."""

    def __init__(self, ping: Callable[[], None], interval: float = 0.5, stale: float = 1.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ping = ping
        self.interval = interval
        self.stale = stale
        self.clock = clock
        self.last_ok: float | None = None
        """Monotonic time of the last ping that succeeded."""
        self.round_trip: float | None = None
        """Seconds the last successful ping took."""
        self.error: str | None = None
        """The last failure, one line (None after a success)."""
        self._stop = threading.Event()
        self._outstanding = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="djctl-dbprobe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.interval + self.stale + 1)

    def answering(self) -> Answer:
        """200 when the database answered within the last ``stale`` seconds, else 503."""
        last = self.last_ok
        if last is None:
            return Answer(503, f"the database has not answered yet{self._why()}")
        ago = self.clock() - last
        if ago > self.stale:
            return Answer(503, f"the database has not answered for {ago:.1f}s{self._why()}")
        return Answer(200, "the database answers")

    def _why(self) -> str:
        return f" ({self.error})" if self.error else ""

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                crowded = self._outstanding >= 3
                if not crowded:
                    self._outstanding += 1
            if not crowded:
                done = threading.Event()
                threading.Thread(target=self._ping_once, args=(done,), name="djctl-dbping", daemon=True).start()
                if not done.wait(self.stale):
                    self.error = f"no answer within {self.stale:g}s"
            self._stop.wait(self.interval)

    def _ping_once(self, done: threading.Event) -> None:
        sent = self.clock()
        try:
            self.ping()
        except Exception as e:  # noqa: BLE001 - any failure means: not answering
            self.error = one_line(e)
        else:
            received = self.clock()
            if self.last_ok is None or received > self.last_ok:
                self.last_ok, self.round_trip, self.error = received, received - sent, None
        finally:
            with self._lock:
                self._outstanding -= 1
            done.set()


def healthz(state: LoopState | None, now: float) -> Answer:
    """Whether the supervisor's loop is alive: it turned within :data:`LOOP_STALL` seconds."""
    if state is None:
        return Answer(503, "the supervisor is starting")
    ago = now - state.at
    if ago > LOOP_STALL:
        return Answer(503, f"the supervisor's loop has not turned for {ago:.1f}s")
    return Answer(200, "ok")


def readyz(state: LoopState | None, now: float, database: Answer) -> Answer:
    """Whether the formation is up (every wanted process up, nothing stopping) and the
    database answers; the first reason it is not, otherwise."""
    alive = healthz(state, now)
    if not alive.ok or state is None:
        return alive
    if state.stopping:
        return Answer(503, "the supervisor is stopping")
    wanted = sum(state.formation.values())
    up = [p for p in state.processes if p.state is State.UP]
    if len(up) < wanted or not state.steady:
        down = [f"{p.name} {p.state.value}" for p in state.processes if p.state is not State.UP]
        detail = f" ({', '.join(down)})" if down else ""
        return Answer(503, f"the formation is not up: {len(up)} of {wanted} processes up{detail}")
    if not database.ok:
        return database
    return Answer(200, f"ok: {len(up)} of {wanted} processes up; the database answers")


def liveness(state: LoopState | None, now: float, name: str) -> Answer:
    """One process (``worker.1``) or every process of a type (``worker``): 200 when up,
    503 when not, 404 when the supervisor runs no such process or type."""
    alive = healthz(state, now)
    if not alive.ok or state is None:
        return alive
    chosen = [p for p in state.processes if p.name == name or p.type == name]
    if not chosen:
        if state.formation.get(name) == 0:
            return Answer(503, f"{name} is scaled to 0")
        return Answer(404, f"no process or type {name!r} here")
    down = [p for p in chosen if p.state is not State.UP]
    if down:
        return Answer(503, ", ".join(f"{p.name} {p.state.value}" for p in down))
    return Answer(200, ", ".join(f"{p.name} up (pid {p.pid})" for p in chosen))
