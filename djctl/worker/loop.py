"""One pass of the worker's loop: each turn, a database round when one is due, claimed
jobs to the executor, then a wait for whatever comes first — the executor's reply, a
wake-up, a signal or the next deadline.

The worker (worker.py) builds the collaborators and owns the process's life; this module
decides, turn by turn, what the collaborators do.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from djctl import config
from djctl.errors import one_line
from djctl.queue import engines as store
from djctl.queue.claims import ClaimedJob
from djctl.worker import journal
from djctl.worker.inflight import InFlight
from djctl.worker.lease import Guard
from djctl.worker.messages import Outcome
from djctl.worker.output import flush
from djctl.worker.report import Report, throughput
from djctl.worker.rounds import Claimed, Round, Rounds
from djctl.worker.wakeup import Waker, open_waker
from djctl.worker.watch import Watch, stopped


class Owner(Protocol):
    """The worker, as the loop sees it: it may be asked to stop, and say whether it was."""

    @property
    def stopping(self) -> bool: ...

    def stop(self) -> None: ...

STATS_JOBS = 10_000
"""A long-running worker says ``N jobs processed at X j/s`` every ``stats_every`` seconds,
or every STATS_JOBS jobs, whichever comes first."""

GIVE_BACK_AFTER = 1.0
"""Seconds a job may run before the jobs claimed ahead of it go back to the queue. The
read-ahead holds about 0.1 s of work; a job ten times that is slow, and another worker
may be idle. (Sooner would churn claims behind jobs that are merely not instant.)"""


@dataclass
class Pass:
    """One run of the loop (``work_off`` or ``start``): what is in hand and what is due."""

    limit: int | None
    until_empty: bool
    announce: bool
    pending: deque[ClaimedJob] = field(default_factory=deque)
    """Claimed, not yet handed to the executor."""
    outcomes: list[Outcome] = field(default_factory=list)
    """Finished, not yet recorded."""
    successes: int = 0
    failures: int = 0
    claimed: int = 0
    idle: bool = False  # the last claim found nothing ready
    hold_until: float = 0.0  # after leaving jobs it may not run, no claim before this
    since: tuple[float, int, int] = (0.0, 0, 0)
    """When the last throughput line was said, and the counts then."""
    give_back: list[int] = field(default_factory=list)
    """Claims given back unstarted, not yet released in the table."""
    next_poll: float = 0.0
    next_maintenance: float = 0.0
    next_renew: float = 0.0
    next_listen: float = 0.0  # when to try LISTEN (or the doorbell) again after losing it
    db_retry_at: float = 0.0
    db_backoff: float = 0.5
    stopping_sent: bool = False
    stop_said: bool = False
    waker: Waker | None = None
    file_gone: str | None = None  # why the worker stops: its SQLite file was deleted or replaced



class Loop:
    """The turns of one pass, over the collaborators the worker built for it."""

    def __init__(self, owner: Owner, *, settings: config.Settings, sleep_delay: float, max_attempts: int,
                 read_ahead: int, stats_every: float, clock: Callable[[], float], say: Callable[[str], None],
                 inflight: InFlight, rounds: Rounds, guard: Guard, report: Report, journal_file: Path,
                 url: URL, wake_r: int) -> None:
        self.w = owner
        self._settings, self._sleep_delay, self._max_attempts = settings, sleep_delay, max_attempts
        self._read_ahead, self.stats_every, self.clock, self._say = read_ahead, stats_every, clock, say
        self.inflight, self.rounds, self.guard, self.report = inflight, rounds, guard, report
        self._journal, self._url, self._wake_r = journal_file, url, wake_r
        self.watch = Watch()
        self._sqlite = store.sqlite_path(url)
        self._file = None if self._sqlite is None else store.file_identity(self._sqlite)

    def step(self, p: Pass) -> bool:
        """One turn: a database round when one is due, jobs to the executor, then wait for
        whatever comes first. False when the pass is over."""
        now = self.clock()
        if now >= p.next_maintenance and p.file_gone is None:
            self._check_file(p)
        if self.w.stopping and self.inflight.child is not None and not p.stopping_sent:
            self.inflight.child.signal(signal.SIGUSR1)
            p.stopping_sent = True
        if self.w.stopping and p.announce and not p.stop_said:
            # Said after the executor was told, so whoever reads it knows no new job starts.
            p.stop_said = True
            self._say("Exiting...")
            flush()
        slow = self._give_back(p)
        want = (
            not slow
            and not self.w.stopping
            and (p.limit is None or p.claimed < p.limit)
            and len(p.pending) + len(self.inflight.sent) <= self._window() // 2
            and (not p.idle or now >= p.next_poll)
            and now >= p.hold_until
            and not any(o.left for o in p.outcomes)  # the claim would take them right back
        )
        if self.guard.expired():
            self._fence(p)
        if ((p.outcomes or want or p.give_back or now >= p.next_maintenance or self._renew_due(p, now))
                and now >= p.db_retry_at):
            self._database(p, now, want)
        if self.guard.expired():
            self._fence(p)
        if self.watch.due(now, self.inflight.running_for()) and now >= p.db_retry_at:
            self._watch(p)
        self._dispatch(p)
        if not self.inflight.sent and not p.outcomes:
            if self.w.stopping:
                return False
            if not p.pending and (p.limit is not None and p.claimed >= p.limit):
                return False
            if p.idle and p.until_empty:
                return False
        self._wait(p)
        return True

    def _check_file(self, p: Pass) -> None:
        """Stop if the SQLite file was deleted or replaced: its jobs are no longer the
        ones enqueued, and a restart opens the file now at the path."""
        if self._sqlite is None:
            return
        now_there = store.file_identity(self._sqlite)
        if now_there == self._file:
            return
        what = "deleted" if now_there is None else "replaced by another file"
        p.file_gone = (f"SQLite database {self._sqlite} was {what} while this worker used it; "
                       "stopping, so that a restart opens the file now at that path")
        self._say(p.file_gone)
        self.w.stop()

    def _database(self, p: Pass, now: float, want: bool) -> None:
        """One round; on a database error, back off and say so."""
        maintenance = now >= p.next_maintenance
        n = 0
        if want:
            n = self._window() if p.limit is None else min(self._window(), p.limit - p.claimed)
        renew = self._renew_due(p, now)
        held = [j.id for j in p.pending] + [r.job.id for r in self.inflight.sent if not r.released]
        r = Round(
            outcomes=p.outcomes, claim=n, maintenance=maintenance, renew=renew,
            # Every claim held is renewed, the running job's too; lost ones are held back,
            # revoked from the executor, or stopped. Those given back are no longer held.
            waiting=held,
            known=set(held) | {o.job.id for o in p.outcomes},
            release=list(p.give_back),
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
        p.give_back.clear()
        if renew or not held:
            self.guard.renewed(stamp)  # every claim held now was written at or after stamp
        if renew:
            # Every interval, but no more often than four times per lease span: each renewal
            # is a write (on SQLite, the one write lock), and three may be missed safely.
            p.next_renew = now + max(self._settings.heartbeat_interval, self.guard.span / 4)
        self._settled(p, got, stamp)
        if maintenance:
            p.next_maintenance = now + min(max(self._sleep_delay, 1.0) * 6, self._settings.heartbeat_timeout / 2)
        if want:
            p.claimed += len(got.jobs)
            p.pending.extend(got.jobs)
        if not p.pending and not self.inflight.sent:
            self.guard.idle()
            p.idle = not got.jobs
            if p.idle:
                p.next_poll = self.clock() + self._sleep_delay
        if p.waker is None and not p.until_empty and now >= p.next_listen:
            self.listen(p)

    def _settled(self, p: Pass, got: Claimed, stamp: float) -> None:
        """A round committed: drop lost claims (stopping a running job whose claim is
        gone), report the outcomes."""
        if got.held is not None:
            lost = [j for j in p.pending if j.id not in got.held]
            for j in lost:
                p.pending.remove(j)
            for job_id in [j.id for j in lost] + self.inflight.revoke_lost(got.held):
                self._say(f"Job (id={job_id}) was taken over by another worker before it started; skipped")
            running = self.inflight.sent[0] if self.inflight.sent else None
            if running is not None and running.started is not None and running.job.id not in got.held:
                self._watch(p, lost=True)
        self._reported(p, got.lost)
        if not self.inflight.sent and not p.pending:
            # Everything the executor finished is recorded and nothing is in its hands.
            journal.reset(self._journal)
        flush()

    def _reported(self, p: Pass, lost: Collection[int] = ()) -> None:
        left = 0
        for o in p.outcomes:
            if o.job.id in lost:
                self._say(f"Job {o.name} (id={o.job.id}) claim lost; outcome not recorded")
                continue
            if o.left:
                left += 1
            elif o.ok:
                p.successes += 1
            else:
                p.failures += 1
            self.report.outcome(o)
        p.outcomes.clear()
        if p.announce:
            self._throughput(p)
        if left:
            # Claiming them again at once would only spin: the next claim would find the
            # same jobs first in line. Other workers take them meanwhile.
            hold = max(self._sleep_delay, 1.0) * 10
            p.hold_until = self.clock() + hold
            if p.until_empty:
                p.idle = True  # what is ready is what it may not run: the pass is over
                self._say(f"left {left} job(s) it may not run, for a worker that can")
            else:
                self._say(f"left {left} job(s) it may not run; claiming again in {hold:g}s")

    def _throughput(self, p: Pass) -> None:
        """Now and then, how many jobs ran since the last time, how fast, how many failed."""
        at, successes, failures = p.since
        now = self.clock()
        jobs = p.successes + p.failures - successes - failures
        if jobs and (now - at >= self.stats_every or jobs >= STATS_JOBS):
            self._say(throughput(jobs, now - at, p.failures - failures))
            p.since = (now, p.successes, p.failures)

    def _give_back(self, p: Pass) -> bool:
        """True while the job in hand has run past GIVE_BACK_AFTER: then the jobs claimed
        ahead of it go back (released in the next round, attempt refunded), so that
        another worker can take them, and no more are claimed until it ends."""
        p.give_back.extend(self.inflight.skipped_held)
        self.inflight.skipped_held.clear()
        took = self.inflight.running_for()
        if took is None or took < GIVE_BACK_AFTER:
            return False
        running = self.inflight.sent[0]
        ids = self.inflight.give_back(p.outcomes, p.pending) + [j.id for j in p.pending]
        p.pending.clear()
        if ids:
            self._say(f"Job {running.name} (id={running.job.id}) has run {took:.1f}s: gave back "
                      f"{len(ids)} job(s) claimed ahead of it, for another worker")
            p.give_back.extend(ids)
        return True

    def _renew_due(self, p: Pass, now: float) -> bool:
        return now >= p.next_renew and bool(p.pending or self.inflight.sent)

    def _fence(self, p: Pass) -> None:
        """Give up every claim held (the lease may expire before we can renew it): the
        running job is killed and said to be stopped; waiting ones are dropped. They go back
        to the queue, attempt refunded, by the first round that reaches the database."""
        self.inflight.kill()
        for r in self.inflight.abandon():
            if r.started is not None:
                self._say(f"Job {r.name} (id={r.job.id}) stopped: lease could not be renewed")
        p.pending.clear()
        self.rounds.unsure = True  # the next round gives back what is locked in our name
        self.guard.clear()

    def _watch(self, p: Pass, lost: bool = False) -> None:
        """Stop the running job if its claim is gone (or is known ``lost``), saying why:
        cancelled, cleared or taken over."""
        running = self.inflight.sent[0]
        try:
            gone = self.rounds.lost([running.job.id])
        except DBAPIError:
            if not lost:
                # Looked again no sooner than the next round may try: the round says what is
                # wrong, and the lease guard stands by meanwhile.
                p.db_retry_at = self.clock() + p.db_backoff
                return
            gone = {running.job.id: ""}
        if lost or running.job.id in gone:
            self._stop_running(p, stopped(running.name, running.job.id, gone.get(running.job.id, "")))

    def _stop_running(self, p: Pass, message: str) -> None:
        """Kill the running job (its claim is gone); the ones queued behind it wait again."""
        for r in reversed(self.inflight.abandon()):
            if r.started is None:
                p.pending.appendleft(r.job)
        self._say(message)

    def listen(self, p: Pass, first: bool = False) -> None:
        """Open wake-ups (LISTEN, or the doorbell); without them the worker polls."""
        try:
            p.waker = open_waker(self._url)
        except Exception as e:  # noqa: BLE001 - polling still works without wake-ups
            if first:
                self._say(f"wake-ups unavailable ({one_line(e)}); polling every {self._sleep_delay}s")
            p.next_listen = self.clock() + max(self._sleep_delay, 1.0)
            return
        if not first:
            # Listening again after an outage: claim once more, for a job enqueued
            # meanwhile rang no one.
            p.idle = False
            self._say("wake-ups are back")

    def _dispatch(self, p: Pass) -> None:
        """Hand claimed jobs to the executor, up to the window; start one if none runs."""
        batch: list[ClaimedJob] = []
        window = self._window()
        while p.pending and len(self.inflight.sent) + len(batch) < window and not self.w.stopping:
            batch.append(p.pending.popleft())
        if batch and self.inflight.send(batch, self._max_attempts):
            p.stopping_sent = False

    def _window(self) -> int:
        """How many claimed jobs may wait in the executor's pipe: about 0.1 s of work.

        Quick jobs travel in batches (up to read_ahead), so the executor never waits for
        a round trip to the database; slow ones one at a time, so no job waits behind a
        slow one that another worker could have run.
        """
        return max(2, min(self._read_ahead, int(0.1 / max(self.inflight.job_seconds, 1e-6))))

    def _wait(self, p: Pass) -> None:
        """Wait for the executor, a wake-up, a signal, or the next deadline; handle what came."""
        fds = [self._wake_r]
        child = self.inflight.child
        if child is not None:
            fds.append(child.from_child)
        if p.waker is not None and p.idle:
            fds.append(p.waker.fileno())
        # A job too big for the pipe goes in pieces, as the executor takes them.
        wfds = [child.to_child] if child is not None and child.outbox else []
        timeout = min(self._timeout(p), max(0.0, p.next_maintenance - self.clock()))
        try:
            ready, writable, _ = select.select(fds, wfds, [], timeout)
        except InterruptedError:
            ready = writable = []
        if writable and child is not None:
            child.flush()
        if self._wake_r in ready:
            _drain_fd(self._wake_r)
        if p.waker is not None and p.waker.fileno() in ready:
            try:
                p.waker.drain()
            except Exception as e:  # noqa: BLE001 - a lost LISTEN connection: poll until it is back
                with contextlib.suppress(Exception):
                    p.waker.close()
                p.waker = None
                self._say(f"wake-ups lost ({one_line(e)}); polling every {self._sleep_delay}s until they are back")
            p.idle = False
        if child is not None and child.from_child in ready:
            self.inflight.read(p.outcomes, p.pending)
        self.inflight.enforce_deadline(p.outcomes, p.pending)

    def _timeout(self, p: Pass) -> float:
        now = self.clock()
        candidates = [self._sleep_delay]
        if p.idle:
            candidates.append(p.next_poll - now)
        if p.hold_until > now:
            candidates.append(p.hold_until - now)
        if p.db_retry_at > now:
            candidates.append(p.db_retry_at - now)
        elif p.outcomes:
            candidates.append(0)
        sent = self.inflight.sent
        if sent and sent[0].deadline is not None:
            candidates.append(sent[0].deadline - now)
        took = self.inflight.running_for()
        look = self.watch.wait(now, took)
        if look is not None:
            candidates.append(look)
        if took is not None and took < GIVE_BACK_AFTER and (p.pending or len(sent) > 1):
            candidates.append(GIVE_BACK_AFTER - took)
        return max(0.0, min(candidates))

    def shutdown(self, p: Pass) -> None:
        """Leave nothing half-done: wait for the job in hand, record outcomes, give back the rest."""
        self.inflight.drain(p.outcomes, p.pending)
        unstarted = ([r.job.id for r in self.inflight.sent] + [j.id for j in p.pending]
                     + p.give_back + self.inflight.skipped_held)
        for attempt in range(3):
            try:
                lost = self.rounds.finish(p.outcomes, unstarted)
            except DBAPIError as e:
                self._say(f"could not record outcomes ({one_line(e)}); retrying")
                time.sleep(0.5 * (attempt + 1))
                continue
            self._reported(p, lost)
            journal.discard(self._journal)
            break
        self.rounds.drop()

def _drain_fd(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass

