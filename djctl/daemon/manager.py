"""The supervisor's decisions: which processes should run, when to start, restart, stop
and kill them. No I/O of its own.

:class:`Manager` is told what happened (``scale``, ``restart``, ``output``, ``exited``,
``stop_all``) and acts through what it was given: ``spawn`` starts a child, a child's
``signal`` stops it, ``emit`` reports an event in Heroku's words, ``clock`` says what
time it is. :meth:`Manager.tick` does whatever has fallen due and says how long until
the next thing will, so the loop that drives it (service.py) sleeps exactly that long
and tests replay scripted histories with a fake clock instead of sleeping.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from djctl.config import Settings
from djctl.daemon import render
from djctl.daemon.logs import utcnow
from djctl.daemon.model import ProcessInfo, State


@dataclass(frozen=True)
class Policy:
    """When processes count as up, how restarts back off, how long stops may take.

    A process is ``up`` once it writes its first line or has run ``up_after`` seconds.
    One that exits unexpectedly after running ``stable_after`` seconds or more is
    restarted at once; one that exits sooner is restarted after ``backoff`` seconds,
    doubling with each quick exit in a row up to ``backoff_max``. A stopped process
    gets ``grace_period`` seconds between SIGTERM and SIGKILL. The formation is
    ``steady`` once each process that is up has run ``up_check`` seconds.
    """

    stable_after: float = 10.0
    backoff: float = 1.0
    backoff_max: float = 60.0
    up_after: float = 5.0
    grace_period: float = 30.0
    up_check: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        """The policy that ``settings`` describe (``DJ_RESTART_*``, ``DJ_UP_AFTER`` and
        ``DJ_GRACE_PERIOD`` reach it through :func:`djctl.config.load_settings`)."""
        return cls(stable_after=settings.restart_stable_after, backoff=settings.restart_backoff,
                   backoff_max=settings.restart_backoff_max, up_after=settings.up_after,
                   grace_period=settings.grace_period, up_check=settings.up_check)

    def delay(self, failures: int) -> float:
        """Seconds to wait before restart number ``failures`` of a quick-crashing process."""
        if failures <= 0:
            return 0.0
        return min(self.backoff * 2 ** min(failures - 1, 30), self.backoff_max)


class Child(Protocol):
    """A running process as the Manager sees it."""

    pid: int

    def signal(self, sig: int) -> None:
        """Send ``sig`` (to the process and whatever it started); never raises."""


@dataclass(frozen=True)
class SpawnRequest:
    """What to start: process ``name`` (``worker.1``) of ``type``, running ``command``
    (as written in the Procfile)."""

    name: str
    type: str
    index: int
    command: str


Spawn = Callable[[SpawnRequest], Child]
Emit = Callable[[str, str], None]


@dataclass
class _Slot:
    name: str
    type: str
    index: int
    since: datetime
    state: State = State.DOWN
    child: Child | None = None
    started: float = 0.0
    started_at: datetime | None = None
    up_since: float = 0.0
    bounced: bool = False
    failures: int = 0
    restart_at: float = 0.0
    kill_at: float = 0.0
    killed: bool = False
    wanted: bool = True
    restarting: bool = False


class Manager:
    """Decides the life of every process of the formation; see the module docstring.

    Not thread-safe: one loop owns it.
    """

    def __init__(
        self,
        types: Mapping[str, str],
        spawn: Spawn,
        emit: Emit,
        policy: Policy = Policy(),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
    ) -> None:
        self.types = dict(types)
        self.formation: dict[str, int] = {name: 0 for name in self.types}
        self.policy = policy
        self.stopping = False
        self._spawn = spawn
        self._emit = emit
        self._clock = clock
        self._wall = wall
        self._slots: dict[str, _Slot] = {}
        self._queue: deque[str] = deque()
        self._restarting: str | None = None

    # -- what the outside asks ----------------------------------------------------------

    def scale(self, formation: Mapping[str, int]) -> list[str]:
        """Run ``formation`` (types missing from it: 0) from now on; returns the types
        whose count changed. Processes numbered above the new count are stopped gracefully."""
        unknown = set(formation) - set(self.types)
        if unknown:
            raise ValueError(f"unknown process type {sorted(unknown)[0]!r}")
        wanted = {name: int(formation.get(name, 0)) for name in self.types}
        changed = [name for name in self.types if wanted[name] != self.formation.get(name, 0)]
        self.formation = wanted
        if not self.stopping:
            for type_name, count in wanted.items():
                for index in range(1, count + 1):
                    name = f"{type_name}.{index}"
                    slot = self._slots.get(name)
                    if slot is None:
                        slot = self._slots[name] = _Slot(name, type_name, index, self._wall())
                        self._start(slot)
                    else:
                        slot.wanted = True
                for slot in list(self._slots.values()):
                    if slot.type == type_name and slot.index > count:
                        slot.wanted = False
                        self._retire(slot)
        return changed

    def retype(self, types: Mapping[str, str]) -> None:
        """Run the commands of ``types`` (a re-read Procfile) from now on: every process
        started after this runs its type's new command. Processes of types ``types`` no
        longer names are stopped gracefully; types it adds run 0 until scaled."""
        self.types = dict(types)
        self.formation = {name: self.formation.get(name, 0) for name in self.types}
        for slot in list(self._slots.values()):
            if slot.type not in self.types:
                slot.wanted = False
                self._retire(slot)

    def restart(self, target: str | None = None) -> list[str]:
        """Queue a graceful restart, one process at a time, of every process (None), of a
        type (``worker``) or of one process (``worker.1``); returns the names queued.
        Raises ValueError when ``target`` names no running process."""
        names = [s.name for s in self._ordered() if s.wanted and _matches(s, target)]
        if not names:
            what = "processes" if target is None else f"process {target!r}"
            raise ValueError(f"no {what} to restart; see djctl ps")
        for name in names:
            # One in the middle of its restart may have started before this request (a
            # second code change): it goes round again.
            if name not in self._queue:
                self._queue.append(name)
            # Whether it stays up is asked afresh of the command it restarts with.
            self._slots[name].bounced = False
        return names

    def stop_all(self) -> None:
        """Stop everything (SIGTERM, then SIGKILL after the grace period); see ``done``."""
        self.stopping = True
        self._queue.clear()
        for slot in list(self._slots.values()):
            slot.wanted = False
            self._retire(slot)

    def output(self, pid: int) -> None:
        """The process ``pid`` wrote a line: it is up if it was starting."""
        slot = self._by_pid(pid)
        if slot is not None and slot.state is State.STARTING:
            self._up(slot)

    def exited(self, pid: int, returncode: int) -> ProcessInfo | None:
        """The child ``pid`` has exited (``returncode`` as subprocess gives it: negative
        for a signal). Returns the process as it was (None for a pid not ours)."""
        slot = self._by_pid(pid)
        if slot is None:
            return None
        info = self._info(slot)
        status = returncode if returncode >= 0 else 128 - returncode
        self._emit(slot.name, render.exited(status))
        slot.child = None
        now = self._clock()
        if slot.state is State.STOPPING:
            if slot.wanted and not self.stopping:
                slot.failures = 0
                self._start(slot)
            else:
                self._set(slot, State.DOWN)
                del self._slots[slot.name]
            return info
        if slot.state is not State.UP or now - slot.up_since < self.policy.up_check:
            slot.bounced = True
        quick = now - slot.started < self.policy.stable_after
        slot.failures = slot.failures + 1 if quick else 0
        delay = self.policy.delay(slot.failures)
        self._set(slot, State.CRASHED)
        slot.restarting = False
        slot.restart_at = now + delay
        if delay > 0:
            self._emit(slot.name, render.restarting_in(delay))
        return info

    def tick(self) -> float | None:
        """Do what has fallen due (restarts, SIGKILLs, starting -> up, the next queued
        restart); seconds until something else will (None: nothing is scheduled)."""
        now = self._clock()
        for slot in list(self._slots.values()):
            if slot.state is State.STARTING and now - slot.started >= self.policy.up_after:
                self._up(slot)
            elif slot.state is State.CRASHED and slot.child is None and now >= slot.restart_at:
                if slot.wanted and not self.stopping:
                    self._start(slot)
            elif slot.state is State.STOPPING and not slot.killed and now >= slot.kill_at:
                slot.killed = True
                self._emit(slot.name, render.exit_timeout(self.policy.grace_period))
                self._emit(slot.name, render.killing())
                if slot.child is not None:
                    slot.child.signal(signal.SIGKILL)
        self._next_restart()
        due = []
        for slot in self._slots.values():
            if slot.state is State.STARTING:
                due.append(slot.started + self.policy.up_after)
            elif slot.state is State.UP and now - slot.up_since < self.policy.up_check:
                due.append(slot.up_since + self.policy.up_check)
            elif slot.state is State.CRASHED and slot.wanted and not self.stopping:
                due.append(slot.restart_at)
            elif slot.state is State.STOPPING and not slot.killed:
                due.append(slot.kill_at)
        return max(0.0, min(due) - now) if due else None

    # -- what the outside reads -----------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once stop_all() has run and every child has exited."""
        return self.stopping and not self._slots

    @property
    def settled(self) -> bool:
        """True when every process of the formation is up or crashed (nothing starting,
        stopping or waiting in the restart queue): the formation is as up as it gets."""
        if self._queue or self._restarting is not None:
            return False
        wanted = sum(self.formation.values())
        slots = [s for s in self._slots.values() if s.wanted]
        return len(slots) == wanted and all(s.state in (State.UP, State.CRASHED) for s in slots)

    @property
    def steady(self) -> bool:
        """True when every process of the formation has either stayed up
        ``policy.up_check`` seconds since it came up or has exited sooner (see
        :meth:`bounced`): what ``djctl up`` waits for, so that a command that exits at
        once is reported as such, not as started."""
        if self._queue or self._restarting is not None:
            return False
        now = self._clock()
        slots = [s for s in self._slots.values() if s.wanted]
        return len(slots) == sum(self.formation.values()) and all(
            s.bounced or (s.state is State.UP and now - s.up_since >= self.policy.up_check)
            for s in slots)

    def bounced(self) -> list[str]:
        """The processes that have exited, since this supervisor started, before staying
        up ``policy.up_check`` seconds, whatever their state now (a restart may be under way)."""
        return [s.name for s in self._ordered() if s.wanted and s.bounced]

    @property
    def restarting(self) -> list[str]:
        """Names still waiting for (or in the middle of) a queued restart."""
        return ([self._restarting] if self._restarting else []) + list(self._queue)

    def processes(self) -> list[ProcessInfo]:
        """Every process, by type (Procfile order) then index."""
        return [self._info(s) for s in self._ordered()]

    def children(self) -> list[Child]:
        """The children running now."""
        return [s.child for s in self._slots.values() if s.child is not None]

    # -- inside ---------------------------------------------------------------------------

    def _ordered(self) -> list[_Slot]:
        order = {name: i for i, name in enumerate(self.types)}
        return sorted(self._slots.values(), key=lambda s: (order.get(s.type, 0), s.index))

    def _by_pid(self, pid: int) -> _Slot | None:
        return next((s for s in self._slots.values() if s.child is not None and s.child.pid == pid), None)

    def _info(self, slot: _Slot) -> ProcessInfo:
        pid = slot.child.pid if slot.child is not None else None
        return ProcessInfo(slot.name, slot.type, pid, slot.state, slot.since,
                           self.types.get(slot.type, ""), slot.started_at)

    def _set(self, slot: _Slot, state: State) -> None:
        if slot.state is not state:
            self._emit(slot.name, render.state_changed(slot.state, state))
            slot.state = state
            slot.since = self._wall()

    def _up(self, slot: _Slot) -> None:
        # A slow interpreter may print its usage error and exit well after its start:
        # the check that it stays up counts from here.
        slot.up_since = self._clock()
        self._set(slot, State.UP)
        slot.restarting = False

    def _start(self, slot: _Slot) -> None:
        command = self.types[slot.type]
        if slot.state is State.DOWN:
            # A new process: Heroku's log starts with its command, not a state change.
            slot.state, slot.since = State.STARTING, self._wall()
        else:
            self._set(slot, State.STARTING)
        self._emit(slot.name, render.starting(command))
        now = self._clock()
        try:
            child = self._spawn(SpawnRequest(slot.name, slot.type, slot.index, command))
        except OSError as e:
            self._emit(slot.name, render.spawn_failed(e.strerror or str(e)))
            slot.child = None
            slot.failures += 1
            self._set(slot, State.CRASHED)
            slot.restarting = False
            slot.restart_at = now + max(self.policy.delay(slot.failures), self.policy.backoff)
            return
        slot.child, slot.started, slot.started_at = child, now, self._wall()
        slot.killed = False

    def _stop(self, slot: _Slot) -> None:
        assert slot.child is not None
        self._emit(slot.name, render.stopping())
        self._set(slot, State.STOPPING)
        slot.kill_at = self._clock() + self.policy.grace_period
        slot.killed = False
        slot.child.signal(signal.SIGTERM)

    def _retire(self, slot: _Slot) -> None:
        """Take a slot that is no longer wanted out of service."""
        if slot.child is None:
            self._set(slot, State.DOWN)
            self._slots.pop(slot.name, None)
        elif slot.state is not State.STOPPING:
            self._stop(slot)

    def _next_restart(self) -> None:
        if self._restarting is not None:
            slot = self._slots.get(self._restarting)
            if slot is not None and slot.restarting and slot.wanted:
                return
            self._restarting = None
        while self._queue and not self.stopping:
            slot = self._slots.get(self._queue.popleft())
            if slot is None or not slot.wanted:
                continue
            self._emit(slot.name, render.restarting())
            slot.restarting = True
            self._restarting = slot.name
            if slot.child is None:
                slot.failures = 0
                self._start(slot)
            elif slot.state is not State.STOPPING:
                self._stop(slot)
            return


def _matches(slot: _Slot, target: str | None) -> bool:
    return target is None or slot.type == target or slot.name == target
