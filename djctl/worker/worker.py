"""The worker: claim jobs, have the executor run them under a time limit, record what happened.

The worker process never runs job code itself (see executor.py). Its loop (loop.py) wires
the collaborators and overlaps their work: while the executor child runs one job, the
worker records the outcomes that have arrived — all of them in one transaction, together
with the next claim when one is due (rounds.py) — so a slow commit never idles the
executor and fast jobs share commits. Dead workers' claims are released on the way
(recovery.py); each outcome is reported once, as a line and an event (report.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from djctl import api, clock, config, proctitle
from djctl.queue import engines as store
from djctl.queue.claims import Claims, Filter
from djctl.worker import identity, journal
from djctl.worker.inflight import InFlight, Running
from djctl.worker.lease import Guard
from djctl.worker.loop import Loop, Pass
from djctl.worker.output import flush, stdout_log
from djctl.worker.report import Events, Report
from djctl.worker.rounds import Rounds

Log = Callable[[str], None]

STATS_EVERY = 60.0
"""Seconds between a long-running worker's ``N jobs processed at X j/s`` lines."""


@dataclass
class Worker:
    """delayed_job's worker. ``work_off(num)`` for one pass, ``start()`` to run until signalled."""

    queues: Iterable[str] | None = None
    min_priority: int | None = None
    max_priority: int | None = None
    sleep_delay: float | None = None
    max_attempts: int | None = None
    max_run_time: timedelta | float | None = None
    read_ahead: int | None = None
    exit_on_complete: bool = False
    kill_grace: float = 2.0
    """Seconds between asking a job past max_run_time to stop and killing it."""
    settings: config.Settings | None = None
    log: Log = stdout_log
    clock: Callable[[], float] = time.monotonic
    stats_every: float = STATS_EVERY
    """Seconds between throughput lines from ``start()``; also said every STATS_JOBS jobs."""

    name: str = field(init=False, default="")
    _stop: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        # The fields as given may be None ("as configured"); what the loop uses is resolved
        # once here, typed, and written back to the fields for whoever reads them.
        s = self.settings or config.current()
        self.settings = self.resolved = s
        self.resolved_sleep_delay: float = s.sleep_delay if self.sleep_delay is None else self.sleep_delay
        self.resolved_max_attempts: int = s.max_attempts if self.max_attempts is None else self.max_attempts
        mrt = s.max_run_time if self.max_run_time is None else self.max_run_time
        self._max_run_time: timedelta = mrt if isinstance(mrt, timedelta) else timedelta(seconds=mrt)
        self.resolved_read_ahead: int = s.read_ahead if self.read_ahead is None else self.read_ahead
        self.sleep_delay, self.max_attempts = self.resolved_sleep_delay, self.resolved_max_attempts
        self.max_run_time, self.read_ahead = self._max_run_time, self.resolved_read_ahead
        self.filter = Filter(
            tuple(self.queues) if self.queues is not None else None, self.min_priority, self.max_priority,
            s.default_queue,
        )
        self._wake_w: int | None = None
        # stop() may come from another thread (or a signal): it must never write to the
        # wake-up fd's number once closed, when it may be another file's.
        self._wake_lock = threading.RLock()
        self._events: Events | None = None

    # -- public --------------------------------------------------------------

    def work_off(self, num: int = 100) -> tuple[int, int]:
        """Run up to ``num`` ready jobs, then return (successes, failures), as delayed_job's work_off."""
        return self._run(Pass(limit=num, until_empty=True, announce=False))

    def start(self) -> None:
        """Work jobs until SIGTERM or SIGINT (or an empty queue with exit_on_complete); then exit cleanly."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._run(Pass(limit=None, until_empty=self.exit_on_complete, announce=True))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """Finish the job in hand, give back the rest, and return from start()."""
        self._stop = True
        with self._wake_lock:
            if self._wake_w is not None:
                try:
                    os.write(self._wake_w, b"!")
                except OSError:
                    pass

    @property
    def stopping(self) -> bool:
        """A stop was asked for: the job in hand finishes, no other starts."""
        return self._stop

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop()

    # -- the loop --------------------------------------------------------------

    def say(self, text: str) -> None:
        self.log(f"[Worker({self.name})] {text}")

    def _run(self, p: Pass) -> tuple[int, int]:
        self.name = identity.format(identity.hostname(), os.getpid())
        clock.warn = self.say  # a skewed clock is reported in the worker's own log
        engine = api.engine(self.resolved.database_url)
        url = store.normalize_url(self.resolved.database_url)
        self.rounds = Rounds(self.resolved.database_url, Claims(engine.dialect.name, self.name, self.filter),
                             lease=timedelta(seconds=self.resolved.heartbeat_timeout),
                             max_attempts=self.resolved_max_attempts,
                             destroy_failed=self.resolved.destroy_failed_jobs, monotonic=self.clock)
        if self._events is None:  # once: work_off may run many passes
            self._events = Events.from_env(os.environ, self.say)
        # Writing to our stdout, the executor says RUN itself, ahead of the job's own
        # output; to another log, we say it.
        executor_says = self.log is stdout_log
        self.report = Report(self.say, self._events)
        p.since = (self.clock(), 0, 0)
        journal_file = journal.path(url, os.getpid())
        journal.reset(journal_file)  # a previous worker's with this pid has long been dealt with
        identity.mark(journal.mark_of(journal_file))
        wake_r, self._wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(self._wake_w, False)
        if p.announce:
            self.log(f"*** Starting job worker {self.name}")
            proctitle.set_title(proctitle.process_name())
            if not (self.resolved.app or self.resolved.allow):
                self.say("WARNING: no app configured, so no job's code may run here; set --app, DJ_APP "
                         "or app in [tool.djctl] of pyproject.toml. Jobs are left for a worker that can run them.")
        self.inflight = InFlight(self.resolved, journal_file, max_run_time=self._max_run_time,
                                 kill_grace=self.kill_grace, clock=self.clock, close=self._events.inherited(),
                                 say=f"[Worker({self.name})] " if executor_says else None,
                                 on_start=None if executor_says else self._started)
        self.guard = Guard(self.resolved.heartbeat_interval, self.resolved.heartbeat_timeout,
                           self._fence_now, self.clock)
        loop = Loop(self, settings=self.resolved, sleep_delay=self.resolved_sleep_delay,
                    max_attempts=self.resolved_max_attempts, read_ahead=self.resolved_read_ahead,
                    stats_every=self.stats_every, clock=self.clock, say=self.say, inflight=self.inflight,
                    rounds=self.rounds, guard=self.guard, report=self.report, journal_file=journal_file,
                    url=url, wake_r=wake_r)
        self.guard.start()
        try:
            if not p.until_empty:
                loop.listen(p, first=True)
            while loop.step(p):
                pass
        finally:
            self.guard.stop()
            loop.shutdown(p)
            if p.waker is not None:
                p.waker.close()
            os.close(wake_r)
            with self._wake_lock:
                wake_w, self._wake_w = self._wake_w, None
                os.close(wake_w)
            if p.announce:
                self.log(f"*** Exiting job worker {self.name}")
            flush()
        if p.file_gone is not None:
            raise store.DatabaseFileError(p.file_gone)
        return p.successes, p.failures

    def _started(self, running: Running) -> None:
        self.report.started(running.name, running.job.id)

    def _fence_now(self) -> None:
        """The lease guard's thread: the lease could not be renewed in time. Kill the job in
        hand now, and break a round hung on a silent connection; the loop does the rest."""
        self.inflight.kill()
        self.rounds.interrupt()

