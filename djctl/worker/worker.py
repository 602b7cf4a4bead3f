"""The worker: claim jobs, have the executor run them under a time limit, record what happened.

The worker process never runs job code itself (see executor.py). Its loop wires the
collaborators and overlaps their work: while the executor child runs one job, the
worker records the outcomes that have arrived — all of them in one transaction, together
with the next claim when one is due (rounds.py) — so a slow commit never idles the
executor and fast jobs share commits. Dead workers' claims are released on the way
(recovery.py); each outcome is reported once, as a line and an event (report.py).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable, Iterable

from sqlalchemy.exc import DBAPIError

from djctl import api, clock, config
from djctl.errors import one_line
from djctl.handlers import default_backoff
from djctl.queue import engines as store
from djctl.queue.claims import ClaimedJob, Claims, Filter
from djctl.worker import identity, journal
from djctl.worker.executor import Child
from djctl.worker.messages import Job, Outcome, Reply, Result, Started
from djctl.worker.report import Events, Report
from djctl.worker.rounds import Claimed, Round, Rounds
from djctl.worker.wakeup import Waker, open_waker

Log = Callable[[str], None]


def _stdout_log(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
    except BrokenPipeError:
        _lose_stdout()


def _flush() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _lose_stdout()


def _lose_stdout() -> None:
    """Nobody reads our output any more (the supervisor was killed, ``| head`` ended):
    carry on into /dev/null, for an exception here would abandon jobs half-recorded."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@dataclass
class _Running:
    """A job handed to the executor: started once its Started message arrives."""

    job: ClaimedJob
    max_attempts: int
    name: str = "?"
    started: float | None = None
    deadline: float | None = None
    signalled: bool = False


@dataclass
class _Pass:
    """One run of the loop (``work_off`` or ``start``): what is in hand and what is due."""

    limit: int | None
    until_empty: bool
    announce: bool
    pending: deque[ClaimedJob] = field(default_factory=deque)
    """Claimed, not yet handed to the executor."""
    sent: deque[_Running] = field(default_factory=deque)
    """Handed to the executor, in order; the first may be running."""
    outcomes: list[Outcome] = field(default_factory=list)
    """Finished, not yet recorded."""
    successes: int = 0
    failures: int = 0
    claimed: int = 0
    idle: bool = False  # the last claim found nothing ready
    next_poll: float = 0.0
    next_maintenance: float = 0.0
    next_listen: float = 0.0  # when to try LISTEN (or the doorbell) again after losing it
    db_retry_at: float = 0.0
    db_backoff: float = 0.5
    child: Child | None = None
    stopping_sent: bool = False
    stop_said: bool = False
    waker: Waker | None = None


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
    log: Log = _stdout_log
    clock: Callable[[], float] = time.monotonic

    name: str = field(init=False, default="")
    _stop: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        s = self.settings or config.current()
        self.settings = s
        self.sleep_delay = s.sleep_delay if self.sleep_delay is None else self.sleep_delay
        self.max_attempts = s.max_attempts if self.max_attempts is None else self.max_attempts
        mrt = s.max_run_time if self.max_run_time is None else self.max_run_time
        self.max_run_time = mrt if isinstance(mrt, timedelta) else timedelta(seconds=mrt)
        self.read_ahead = s.read_ahead if self.read_ahead is None else self.read_ahead
        self.filter = Filter(
            tuple(self.queues) if self.queues is not None else None, self.min_priority, self.max_priority
        )
        self._wake_w: int | None = None
        self._events: Events | None = None

    # -- public --------------------------------------------------------------

    def work_off(self, num: int = 100) -> tuple[int, int]:
        """Run up to ``num`` ready jobs, then return (successes, failures), as delayed_job's work_off."""
        return self._run(_Pass(limit=num, until_empty=True, announce=False))

    def start(self) -> None:
        """Work jobs until SIGTERM or SIGINT (or an empty queue with exit_on_complete); then exit cleanly."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._run(_Pass(limit=None, until_empty=self.exit_on_complete, announce=True))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """Finish the job in hand, give back the rest, and return from start()."""
        self._stop = True
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"!")
            except OSError:
                pass

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop()

    # -- the loop --------------------------------------------------------------

    def _say(self, text: str) -> None:
        self.log(f"[Worker({self.name})] {text}")

    def _run(self, p: _Pass) -> tuple[int, int]:
        assert self.settings is not None
        self.name = identity.format(identity.hostname(), os.getpid())
        engine = api.engine(self.settings.database_url)
        self._url = store.normalize_url(self.settings.database_url)
        self.rounds = Rounds(self.settings.database_url, Claims(engine.dialect.name, self.name, self.filter),
                             max_run_time=self.max_run_time, max_attempts=self.max_attempts,
                             destroy_failed=self.settings.destroy_failed_jobs)
        if self._events is None:  # once: work_off may run many passes
            self._events = Events.from_env(os.environ, self._say)
        self.report = Report(self._say, self._events)
        self._journal = journal.path(self._url, os.getpid())
        journal.reset(self._journal)  # a previous worker's with this pid has long been dealt with
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        if p.announce:
            self.log(f"*** Starting job worker {self.name}")
        self._fresh: dict[int, float] = {}  # job id -> clock when its locked_at was last written
        self._job_seconds = 0.05  # a moving average of how long jobs take; assume slow at first
        try:
            if not p.until_empty:
                self._listen(p, first=True)
            while self._step(p):
                pass
        finally:
            self._shutdown(p)
            if p.waker is not None:
                p.waker.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_w = None
            if p.announce:
                self.log(f"*** Exiting job worker {self.name}")
            _flush()
        return p.successes, p.failures

    def _step(self, p: _Pass) -> bool:
        """One turn: a database round when one is due, jobs to the executor, then wait for
        whatever comes first. False when the pass is over."""
        now = self.clock()
        if self._stop and p.child is not None and not p.stopping_sent:
            p.child.signal(signal.SIGUSR1)
            p.stopping_sent = True
        if self._stop and p.announce and not p.stop_said:
            # Said after the executor was told, so whoever reads it knows no new job starts.
            p.stop_said = True
            self._say("Exiting...")
            _flush()
        want = (
            not self._stop
            and (p.limit is None or p.claimed < p.limit)
            and len(p.pending) + len(p.sent) <= self._window() // 2
            and (not p.idle or now >= p.next_poll)
        )
        if (p.outcomes or want or now >= p.next_maintenance) and now >= p.db_retry_at:
            self._database(p, now, want)
        self._dispatch(p)
        if not p.sent and not p.outcomes:
            if self._stop:
                return False
            if not p.pending and (p.limit is not None and p.claimed >= p.limit):
                return False
            if p.idle and p.until_empty:
                return False
        self._wait(p)
        return True

    def _database(self, p: _Pass, now: float, want: bool) -> None:
        """One round; on a database error, back off and say so."""
        maintenance = now >= p.next_maintenance
        n = 0
        if want:
            n = self._window() if p.limit is None else min(self._window(), p.limit - p.claimed)
        r = Round(
            outcomes=p.outcomes, claim=n, maintenance=maintenance,
            # Jobs handed to the executor but not started are renewed too; lost ones are
            # held back, or revoked from the executor.
            waiting=[j.id for j in p.pending] + [s.job.id for s in p.sent if s.started is None],
            known={j.id for j in p.pending} | {s.job.id for s in p.sent} | {o.job.id for o in p.outcomes},
        )
        stamp = self.clock()  # no later than the locked_at the round writes
        try:
            got = self.rounds.run(r)
        except DBAPIError as e:
            p.db_retry_at = self.clock() + p.db_backoff
            self._say(f"database unavailable ({one_line(e)}); retrying in {p.db_backoff:.1f}s")
            p.db_backoff = min(p.db_backoff * 2, 10.0)
            return
        p.db_backoff = 0.5
        self._settled(p, got, stamp)
        if maintenance:
            # Often enough that claims waiting in the read-ahead are renewed
            # long before they could look expired.
            p.next_maintenance = now + min(max(self.sleep_delay, 1.0) * 6,
                                           self.max_run_time.total_seconds() / 20)
        if want:
            p.claimed += len(got.jobs)
            p.pending.extend(got.jobs)
            p.idle = not got.jobs
            if p.idle:
                p.next_poll = self.clock() + self.sleep_delay
        if p.waker is None and not p.until_empty and now >= p.next_listen:
            self._listen(p)

    def _settled(self, p: _Pass, got: Claimed, stamp: float) -> None:
        """A round committed: note fresh claims, drop lost ones, report the outcomes."""
        for job_id in [j.id for j in got.jobs] + sorted(got.held or ()):
            self._fresh[job_id] = stamp
        if got.held is not None:
            for j in [j for j in p.pending if j.id not in got.held]:
                p.pending.remove(j)
                self._say(f"Job (id={j.id}) was taken over by another worker before it started; skipped")
            for s in p.sent if p.child is not None else ():
                if s.started is None and s.job.id not in got.held:
                    p.child.revoke(s.job.id)
                    self._say(f"Job (id={s.job.id}) was taken over by another worker before it started; skipped")
        self._reported(p)
        if not p.sent and not p.pending:
            # Everything the executor finished is recorded and nothing is in its hands.
            journal.reset(self._journal)
        _flush()

    def _reported(self, p: _Pass) -> None:
        for o in p.outcomes:
            if o.ok:
                p.successes += 1
            else:
                p.failures += 1
            self.report.outcome(o)
        p.outcomes.clear()

    def _listen(self, p: _Pass, first: bool = False) -> None:
        """Open wake-ups (LISTEN, or the doorbell); without them the worker polls."""
        try:
            p.waker = open_waker(self._url)
        except Exception as e:  # noqa: BLE001 - polling still works without wake-ups
            if first:
                self._say(f"wake-ups unavailable ({one_line(e)}); polling every {self.sleep_delay}s")
            p.next_listen = self.clock() + max(self.sleep_delay, 1.0)
            return
        if not first:
            # Listening again after an outage: claim once more, for a job enqueued
            # meanwhile rang no one.
            p.idle = False
            self._say("wake-ups are back")

    def _dispatch(self, p: _Pass) -> None:
        """Hand claimed jobs to the executor, up to the window; start one if none runs."""
        batch = []
        max_run_time = self.max_run_time.total_seconds()
        while p.pending and len(p.sent) < self._window() and not self._stop:
            job = p.pending.popleft()
            batch.append(Job(job.id, job.handler, job.attempts, self.max_attempts, max_run_time))
            p.sent.append(_Running(job, self.max_attempts))
        if batch:
            if p.child is None:
                p.child = Child(self.settings, self._journal, close=self.report.events.inherited())
                p.stopping_sent = False
            p.child.send(batch)

    def _window(self) -> int:
        """How many claimed jobs may wait in the executor's pipe: about 0.1 s of work.

        Quick jobs travel in batches (up to read_ahead), so the executor never waits for
        a round trip to the database; slow ones one at a time, so no job waits behind a
        slow one that another worker could have run.
        """
        return max(2, min(self.read_ahead, int(0.1 / max(self._job_seconds, 1e-6))))

    def _wait(self, p: _Pass) -> None:
        """Wait for the executor, a wake-up, a signal, or the next deadline; handle what came."""
        fds = [self._wake_r]
        if p.child is not None:
            fds.append(p.child.from_child)
        if p.waker is not None and p.idle:
            fds.append(p.waker.fileno())
        timeout = min(self._timeout(p), max(0.0, p.next_maintenance - self.clock()))
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            ready = []
        if self._wake_r in ready:
            _drain_fd(self._wake_r)
        if p.waker is not None and p.waker.fileno() in ready:
            try:
                p.waker.drain()
            except Exception as e:  # noqa: BLE001 - a lost LISTEN connection: poll until it is back
                with contextlib.suppress(Exception):
                    p.waker.close()
                p.waker = None
                self._say(f"wake-ups lost ({one_line(e)}); polling every {self.sleep_delay}s until they are back")
            p.idle = False
        if p.child is not None and p.child.from_child in ready:
            replies = p.child.read()
            if replies is None:
                how = p.child.reap()
                self._child_died(p, how, loading_counts=p.child.crashed)
                p.child = None
            else:
                self._handle(p, replies)
        if p.child is not None and p.sent:
            self._enforce_deadline(p)

    def _timeout(self, p: _Pass) -> float:
        now = self.clock()
        candidates = [self.sleep_delay]
        if p.idle:
            candidates.append(p.next_poll - now)
        if p.db_retry_at > now:
            candidates.append(p.db_retry_at - now)
        elif p.outcomes:
            candidates.append(0)
        if p.sent and p.sent[0].deadline is not None:
            candidates.append(p.sent[0].deadline - now)
        return max(0.0, min(candidates))

    # -- the executor --------------------------------------------------------------

    def _handle(self, p: _Pass, replies: list[Reply]) -> None:
        for msg in replies:
            if isinstance(msg, Started):
                sent = p.sent
                running = sent[0] if sent[0].job.id == msg.id else next(r for r in sent if r.job.id == msg.id)
                running.name = msg.name
                running.started = self.clock()
                running.max_attempts = msg.max_attempts
                # Stopped before its claim could look expired to other workers, too.
                fresh = self._fresh.pop(running.job.id, running.started)
                expires = fresh + self.max_run_time.total_seconds()
                running.deadline = min(running.started + msg.max_run_time, expires) if msg.max_run_time else None
                continue
            running = p.sent.popleft()
            assert running.job.id == msg.id, "executor answered out of order"
            if not isinstance(msg, Result):
                continue  # skipped: revoked before it started
            took = None
            if running.started is not None:
                took = self.clock() - running.started
                self._job_seconds += (took - self._job_seconds) * 0.2
            p.outcomes.append(Outcome(running.job, running.name, msg.ok, msg.error, msg.retry_at, took))

    def _enforce_deadline(self, p: _Pass) -> None:
        running = p.sent[0]
        if running.deadline is None or self.clock() < running.deadline:
            return
        if not running.signalled:
            running.signalled = True
            p.child.signal(signal.SIGUSR2)
            running.deadline = self.clock() + self.kill_grace
            return
        p.child.signal(signal.SIGKILL)
        p.child.reap()
        p.child = None
        limit = self.max_run_time.total_seconds()
        self._child_died(p, f"stopped after exceeding max_run_time ({limit:g}s)")

    def _child_died(self, p: _Pass, how: str, loading_counts: bool = False) -> None:
        """The executor is gone: the job it was running failed; the ones queued behind it go back.

        With ``loading_counts`` (it crashed rather than exiting when asked), the job it was
        still loading failed too: a job that kills its process on import must not loop.
        """
        if p.sent and (p.sent[0].started is not None or loading_counts):
            running = p.sent.popleft()
            job = running.job
            retry_at = None
            if job.attempts < running.max_attempts:
                retry_at = clock.utcnow() + default_backoff(job.attempts)
            took = None if running.started is None else self.clock() - running.started
            p.outcomes.append(Outcome(job, running.name, False, f"job process {how} while running this job",
                                      retry_at, took))
        while p.sent:
            p.pending.appendleft(p.sent.pop().job)

    def _shutdown(self, p: _Pass) -> None:
        """Leave nothing half-done: wait for the job in hand, record outcomes, give back the rest."""
        if p.child is not None:
            self._drain_child(p)
        unstarted = [r.job.id for r in p.sent] + [j.id for j in p.pending]
        for attempt in range(3):
            try:
                self.rounds.finish(p.outcomes, unstarted)
            except DBAPIError as e:
                self._say(f"could not record outcomes ({one_line(e)}); retrying")
                time.sleep(0.5 * (attempt + 1))
                continue
            self._reported(p)
            journal.discard(self._journal)
            break
        self.rounds.drop()

    def _drain_child(self, p: _Pass) -> None:
        """Let the executor end: read to its end, for a job whose Started message still sits
        in the pipe has run, and giving it back as unstarted would run it twice."""
        child = p.child
        child.signal(signal.SIGUSR1)
        child.close_input()
        while True:
            if p.sent and p.sent[0].started is not None:
                limit = p.sent[0].deadline  # the job in hand may finish, up to its max_run_time
            else:
                limit = self.clock() + self.kill_grace  # between jobs, it is about to exit
            wait = None if limit is None else max(0.0, limit - self.clock())
            ready, _, _ = select.select([child.from_child], [], [], wait)
            if not ready:
                child.signal(signal.SIGKILL)
                break
            replies = child.read()
            if replies is None:
                break
            self._handle(p, replies)
        how = child.reap()
        p.child = None
        if p.sent and p.sent[0].started is not None:
            self._child_died(p, how)


def _drain_fd(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
