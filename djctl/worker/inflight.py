"""The jobs in the executor child's hands: handing them over, following their Started and
Result messages, enforcing max_run_time, and what a dead child leaves behind."""

from __future__ import annotations

import select
import signal
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from djctl import clock, config
from djctl.handlers import default_backoff, target_name
from djctl.queue.claims import ClaimedJob
from djctl.worker.executor import Child
from djctl.worker.messages import Job, Left, Outcome, Progress, Reply, Result, Started


@dataclass
class Running:
    """A job handed to the executor: started once its Started message arrives."""

    job: ClaimedJob
    max_attempts: int
    name: str = "?"
    started: float | None = None
    waited: float | None = None
    """Seconds from when the job was due (its run_at, by the database's clock) to its start."""
    deadline: float | None = None
    signalled: bool = False
    revoked: bool = False
    """The executor was told to skip it (it may have started all the same)."""
    given_back: bool = False
    """Revoked so that another worker may run it: never started here, never renewed."""
    released: bool = False
    """Given back and released in the table: no longer this worker's, whatever happens."""


class InFlight:
    """The executor child (forked on demand) and the jobs sent to it, in order; the first
    may be running. Outcomes go to ``outcomes``; jobs a dead child never started go back
    to the front of ``pending``."""

    def __init__(self, settings: config.Settings, journal_file: Path, *, max_run_time: timedelta,
                 kill_grace: float, clock: Callable[[], float], close: Sequence[int] = (),
                 say: str | None = None, on_start: Callable[[Running], None] | None = None,
                 on_progress: Callable[[Running, Progress], None] | None = None) -> None:
        self.settings = settings
        self.journal_file = journal_file
        self.max_run_time = max_run_time.total_seconds()
        self.kill_grace = kill_grace
        self.clock = clock
        self.close = tuple(close)
        self.say = say
        """The log prefix the executor writes its RUN lines with, if it writes them."""
        self.on_start = on_start
        self.on_progress = on_progress
        """Called with each progress report of the running job (``djctl.progress``)."""
        """Called as each job starts, when the executor does not say it."""
        self.sent: deque[Running] = deque()
        self.child: Child | None = None
        self.fenced = False
        """The lease guard killed the child: what it held is abandoned, not failed."""
        self.job_seconds = 0.05
        """A moving average of how long jobs take; assume slow at first."""
        self.skipped_held: list[int] = []
        """Given back, skipped by the executor, still claimed: to be released."""

    def send(self, jobs: Sequence[ClaimedJob], max_attempts: int) -> bool:
        """Hand ``jobs`` to the executor; True when a new child had to be forked."""
        self.sent.extend(Running(j, max_attempts) for j in jobs)
        forked = self.child is None
        if self.child is None:
            self.child = Child(self.settings, self.journal_file, close=self.close, say=self.say)
        self.child.send([Job(j.id, j.handler, j.attempts, max_attempts, self.max_run_time) for j in jobs])
        return forked

    def revoke_lost(self, held: set[int]) -> list[int]:
        """Revoke the unstarted jobs whose claim is no longer ``held``; their ids."""
        lost = [r.job.id for r in self.sent if r.started is None and not r.given_back and r.job.id not in held]
        if self.child is not None:
            for r in self.sent:
                if r.job.id in lost:
                    r.revoked = True
            for job_id in lost:
                self.child.revoke(job_id)
        return lost

    def handle(self, replies: Sequence[Reply], outcomes: list[Outcome]) -> None:
        for msg in replies:
            if isinstance(msg, Started):
                self._started(msg)
                continue
            if isinstance(msg, Progress):
                running = next((r for r in self.sent if r.job.id == msg.id), None)
                if running is not None and self.on_progress is not None:
                    self.on_progress(running, msg)
                continue
            running = self.sent.popleft()
            assert running.job.id == msg.id, "executor answered out of order"
            if isinstance(msg, Left):
                outcomes.append(Outcome(running.job, target_name(running.job.handler), False, msg.error, left=True))
                continue
            if not isinstance(msg, Result):
                # Skipped: revoked before it started. Given back, but too late to be
                # sure of it at the time: still ours, to release now.
                if running.given_back and not running.released:
                    self.skipped_held.append(running.job.id)
                continue
            took = None
            if running.started is not None:
                took = self.clock() - running.started
                self.job_seconds += (took - self.job_seconds) * 0.2
            outcomes.append(Outcome(running.job, running.name, msg.ok, msg.error, msg.retry_at, took,
                                    waited=running.waited))

    def _started(self, msg: Started) -> None:
        sent = self.sent
        running = sent[0] if sent[0].job.id == msg.id else next(r for r in sent if r.job.id == msg.id)
        running.name = msg.name
        running.started = self.clock()
        running.waited = max(0.0, (clock.utcnow() - running.job.run_at).total_seconds())
        if running.revoked and self.child is not None:
            self.child.unrevoke(running.job.id)
        running.max_attempts = msg.max_attempts
        # max_run_time is the job's own limit; its claim stays ours as long as the lease is
        # renewed (see lease.py), however long it runs.
        running.deadline = running.started + msg.max_run_time if msg.max_run_time else None
        if self.on_start is not None and msg.max_run_time:  # 0: it could not be loaded, never ran
            self.on_start(running)

    def running_for(self) -> float | None:
        """How long the job in the executor's hands has been running; None when none is."""
        if self.sent and self.sent[0].started is not None:
            return self.clock() - self.sent[0].started
        return None

    def give_back(self, outcomes: list[Outcome], pending: deque[ClaimedJob]) -> list[int]:
        """Revoke the jobs waiting behind the running one; the ids of those the executor
        will surely skip, for the caller to release now.

        The executor looks for revoked jobs only after it has written the result of the
        job before: if no result of the running job is readable after the revocation was
        written, the executor will see it before starting the next one. Otherwise some
        may start anyway (and run here), or be skipped later (see ``skipped_held``).
        """
        waiting = [r for r in self.sent if r.started is None and not r.given_back]
        if self.child is None or not waiting:
            return []
        running = self.sent[0]
        for r in waiting:
            r.given_back = r.revoked = True
            self.child.revoke(r.job.id)
        ready, _, _ = select.select([self.child.from_child], [], [], 0)
        if ready:
            self.read(outcomes, pending)
        if not self.sent or self.sent[0] is not running:
            return []
        for r in waiting:
            r.released = True
        return [r.job.id for r in waiting]

    def read(self, outcomes: list[Outcome], pending: deque[ClaimedJob]) -> None:
        """The child has something to say (or has gone)."""
        child = self.child
        assert child is not None, "read only while a child runs"
        replies = child.read()
        if replies is None:
            how = child.reap()
            self.died(how, outcomes, pending, loading_counts=child.crashed)
        else:
            self.handle(replies, outcomes)

    def enforce_deadline(self, outcomes: list[Outcome], pending: deque[ClaimedJob]) -> None:
        """Past its deadline the running job is asked to stop (SIGUSR2), then killed."""
        running = self.sent[0] if self.sent else None
        if self.child is None or running is None or running.deadline is None or self.clock() < running.deadline:
            return
        if not running.signalled:
            running.signalled = True
            self.child.signal(signal.SIGUSR2)
            running.deadline = self.clock() + self.kill_grace
            return
        self.child.kill()
        self.child.reap()
        self.died(f"stopped after exceeding max_run_time ({self.max_run_time:g}s)", outcomes, pending)

    def died(self, how: str, outcomes: list[Outcome], pending: deque[ClaimedJob],
             loading_counts: bool = False) -> None:
        """The executor is gone: the job it was running failed; the ones queued behind it go back.

        With ``loading_counts`` (it crashed rather than exiting when asked), the job it was
        still loading failed too: a job that kills its process on import must not loop.
        """
        self.child = None
        if self.fenced:
            return  # killed by the lease guard: abandon() settles what it held
        if self.sent and (self.sent[0].started is not None or loading_counts):
            running = self.sent.popleft()
            job = running.job
            retry_at = None
            if job.attempts < running.max_attempts:
                retry_at = clock.utcnow() + default_backoff(job.attempts)
            took = None if running.started is None else self.clock() - running.started
            outcomes.append(Outcome(job, running.name, False, f"job process {how} while running this job",
                                    retry_at, took, waited=running.waited))
        while self.sent:
            running = self.sent.pop()
            if running.given_back:
                if not running.released:
                    self.skipped_held.append(running.job.id)
                continue
            pending.appendleft(running.job)

    def kill(self) -> None:
        """SIGKILL the executor and every process its job started, from any thread (the
        lease guard's): a job whose lease is lost must not live on in its children."""
        child = self.child
        if child is not None:
            self.fenced = True
            child.kill()

    def abandon(self) -> list[Running]:
        """Kill the executor (if not already) and give up every job sent to it, with no
        outcome: their claims are about to expire or are gone. Returns what was sent."""
        if self.child is not None:
            self.child.kill()  # and every process its job started: nothing of it runs on
            self.child.reap()
            self.child = None
        self.fenced = False
        gone = list(self.sent)
        self.sent.clear()
        return gone

    def drain(self, outcomes: list[Outcome], pending: deque[ClaimedJob]) -> None:
        """Let the executor end: read to its end, for a job whose Started message still sits
        in the pipe has run, and giving it back as unstarted would run it twice."""
        child = self.child
        if child is None:
            return
        child.signal(signal.SIGUSR1)
        child.close_input()
        while True:
            if self.sent and self.sent[0].started is not None:
                limit = self.sent[0].deadline  # the job in hand may finish, up to its max_run_time
            else:
                limit = self.clock() + self.kill_grace  # between jobs, it is about to exit
            wait = None if limit is None else max(0.0, limit - self.clock())
            ready, _, _ = select.select([child.from_child], [], [], wait)
            if not ready:
                child.kill()
                break
            replies = child.read()
            if replies is None:
                break
            self.handle(replies, outcomes)
        how = child.reap()
        self.child = None
        if self.sent and self.sent[0].started is not None:
            self.died(how, outcomes, pending)
