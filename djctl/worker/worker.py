"""The worker: claim jobs, have the executor run them under a time limit, record what happened.

The worker process never runs job code itself (see executor.py). Its loop overlaps
the two: while the executor runs one job, the worker records the outcomes that have
arrived — all of them in one transaction, together with the next claim when one is
due — so a slow commit never idles the executor and fast jobs share commits.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterable

import psutil
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from djctl import api, config, proctitle
from djctl.queue import claims as claim
from djctl.worker import executor
from djctl.worker import journal
from djctl.queue import engines as store
from djctl.queue.claims import ClaimedJob, Claims, Filter
from djctl.recurrence import next_run
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
    job: ClaimedJob
    name: str = "?"
    started: float | None = None
    deadline: float | None = None
    max_attempts: int = 25
    signalled: bool = False


@dataclass
class _Outcome:
    job: ClaimedJob
    name: str
    ok: bool
    error: str | None = None
    retry_at: datetime | None = None


class _Executor:
    """The parent's handle on one executor child."""

    def __init__(self, settings: config.Settings, journal_file=None) -> None:
        self.pid, self.to_child, self.from_child, self.revoke_fd = executor.spawn(settings, journal_file)
        self.buffer = b""

    def revoke(self, job_id: int) -> None:
        """Skip this job if it has not started: its claim was lost while it waited."""
        try:
            os.write(self.revoke_fd, f"{job_id}\n".encode())
        except OSError:
            pass  # the child is gone; the job goes back with the rest

    def send(self, msgs: list[dict]) -> None:
        data = "".join(json.dumps(m, separators=(",", ":")) + "\n" for m in msgs).encode()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.to_child, view):]
        except BrokenPipeError:
            pass  # the child is gone: its EOF, read next, puts the job back

    def read(self) -> list[dict] | None:
        """Messages available now; None once the child has gone (EOF)."""
        try:
            chunk = os.read(self.from_child, 1 << 16)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return []
            chunk = b""
        if not chunk:
            return None
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line]

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def reap(self) -> str:
        """Wait for the child to exit; how it ended, in words."""
        for fd in (self.to_child, self.from_child, self.revoke_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        _, status = os.waitpid(self.pid, 0)
        self.crashed = not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            return f"killed by signal {sig} ({signal.Signals(sig).name})"
        return f"exited with status {os.WEXITSTATUS(status)}"


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
            tuple(self.queues) if self.queues is not None else None, self.min_priority, self.max_priority,
            s.default_queue,
        )

    # -- public --------------------------------------------------------------

    def work_off(self, num: int = 100) -> tuple[int, int]:
        """Run up to ``num`` ready jobs, then return (successes, failures), as delayed_job's work_off."""
        return self._run(limit=num, until_empty=True)

    def start(self) -> None:
        """Work jobs until SIGTERM or SIGINT (or an empty queue with exit_on_complete); then exit cleanly."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._run(limit=None, until_empty=self.exit_on_complete, announce=True)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """Finish the job in hand, give back the rest, and return from start()."""
        self._stop = True
        if getattr(self, "_wake_w", None) is not None:
            try:
                os.write(self._wake_w, b"!")
            except OSError:
                pass

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop()

    # -- the loop --------------------------------------------------------------

    def _say(self, text: str) -> None:
        self.log(f"[Worker({self.name})] {text}")

    def _run(self, limit: int | None, until_empty: bool, announce: bool = False) -> tuple[int, int]:
        assert self.settings is not None
        self.name = claim.worker_name(claim.hostname(), os.getpid())
        engine = api.engine(self.settings.database_url)
        url = store.normalize_url(self.settings.database_url)
        self.claims = Claims(engine.dialect.name, self.name, self.filter)
        self._journal = journal.path(url, os.getpid())
        journal.reset(self._journal)  # a previous worker's with this pid has long been dealt with
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        if announce:
            self.log(f"*** Starting job worker {self.name}")
            proctitle.set_title(proctitle.process_name())
        waker: Waker | None = None
        child: _Executor | None = None
        self._conn: Connection | None = None
        pending: deque[ClaimedJob] = deque()
        sent: deque[_Running] = deque()
        outcomes: list[_Outcome] = []
        counts = [0, 0]
        claimed = 0
        idle = False  # the last claim found nothing ready
        next_poll = 0.0
        next_maintenance = 0.0
        next_listen = 0.0  # when to try LISTEN (or the doorbell) again after losing it
        db_retry_at = 0.0
        db_backoff = 0.5
        stopping_sent = False
        stop_said = False
        self._fresh: dict[int, float] = {}  # job id -> clock when its locked_at was last written
        self._unsure = False  # a transaction failed: we may hold claims we never heard of
        self._job_seconds = 0.05  # a moving average of how long jobs take; assume slow at first
        try:
            if not until_empty:
                try:
                    waker = open_waker(url)
                except Exception as e:  # noqa: BLE001 - polling still works without wake-ups
                    self._say(f"wake-ups unavailable ({_one_line(e)}); polling every {self.sleep_delay}s")
                    next_listen = self.clock() + max(self.sleep_delay, 1.0)
            while True:
                now = self.clock()
                if self._stop and child is not None and not stopping_sent:
                    child.signal(signal.SIGUSR1)
                    stopping_sent = True
                if self._stop and announce and not stop_said:
                    # Said after the executor was told, so whoever reads it knows no new job starts.
                    stop_said = True
                    self._say("Exiting...")
                    _flush()
                window = self._window()
                want = (
                    not self._stop
                    and (limit is None or claimed < limit)
                    and len(pending) + len(sent) <= window // 2
                    and (not idle or now >= next_poll)
                )
                if (outcomes or want or now >= next_maintenance) and now >= db_retry_at:
                    try:
                        jobs = self._transact(outcomes, counts, want, limit, claimed, now >= next_maintenance,
                                              pending, sent, child)
                        db_backoff = 0.5
                    except DBAPIError as e:
                        self._drop_connection()
                        self._unsure = True
                        db_retry_at = self.clock() + db_backoff
                        self._say(f"database unavailable ({_one_line(e)}); retrying in {db_backoff:.1f}s")
                        db_backoff = min(db_backoff * 2, 10.0)
                        jobs = None
                    if now >= next_maintenance and jobs is not None:
                        # Often enough that claims waiting in the read-ahead are renewed
                        # long before they could look expired (see _transact).
                        next_maintenance = now + min(max(self.sleep_delay, 1.0) * 6,
                                                     self.max_run_time.total_seconds() / 20)
                    if jobs is not None and want:
                        claimed += len(jobs)
                        pending.extend(jobs)
                        idle = not jobs
                        if idle:
                            next_poll = self.clock() + self.sleep_delay
                    if jobs is not None and waker is None and not until_empty and now >= next_listen:
                        # The database answers: so may LISTEN, lost in an outage. Once it
                        # listens, claim once more: a job enqueued meanwhile rang no one.
                        try:
                            waker = open_waker(url)
                            idle = False
                            self._say("wake-ups are back")
                        except Exception:  # noqa: BLE001 - polling goes on meanwhile
                            next_listen = now + max(self.sleep_delay, 1.0)
                batch = []
                while pending and len(sent) < window and not self._stop:
                    job = pending.popleft()
                    batch.append({"id": job.id, "handler": job.handler, "attempts": job.attempts,
                                  "max_attempts": self.max_attempts,
                                  "max_run_time": self.max_run_time.total_seconds()})
                    sent.append(_Running(job, max_attempts=self.max_attempts))
                if batch:
                    if child is None:
                        child = _Executor(self.settings, self._journal)
                        stopping_sent = False
                    child.send(batch)
                if not sent and not outcomes:
                    if self._stop:
                        break
                    if not pending and (limit is not None and claimed >= limit):
                        break
                    if idle and until_empty:
                        break
                # Wait for the executor, a wake-up, a signal, or the next deadline.
                fds = [self._wake_r]
                if child is not None:
                    fds.append(child.from_child)
                if waker is not None and idle:
                    fds.append(waker.fileno())
                timeout = min(self._timeout(sent, idle, next_poll, db_retry_at, outcomes),
                              max(0.0, next_maintenance - self.clock()))
                try:
                    ready, _, _ = select.select(fds, [], [], timeout)
                except InterruptedError:
                    ready = []
                if self._wake_r in ready:
                    _drain_fd(self._wake_r)
                if waker is not None and waker.fileno() in ready:
                    try:
                        waker.drain()
                    except Exception as e:  # noqa: BLE001 - a lost LISTEN connection: poll until it is back
                        with contextlib.suppress(Exception):
                            waker.close()
                        waker = None
                        self._say(f"wake-ups lost ({_one_line(e)}); polling every {self.sleep_delay}s until they are back")
                    idle = False
                if child is not None and child.from_child in ready:
                    messages = child.read()
                    if messages is None:
                        how = child.reap()
                        self._child_died(how, sent, pending, outcomes, loading_counts=child.crashed)
                        child = None
                    else:
                        self._handle(messages, sent, outcomes)
                if child is not None and sent:
                    child = self._enforce_deadline(child, sent, pending, outcomes)
        finally:
            self._shutdown(child, pending, sent, outcomes, counts)
            if waker is not None:
                waker.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_w = None
            if announce:
                self.log(f"*** Exiting job worker {self.name}")
            _flush()
        return counts[0], counts[1]

    def _window(self) -> int:
        """How many claimed jobs may wait in the executor's pipe: about 0.1 s of work.

        Quick jobs travel in batches (up to read_ahead), so the executor never waits for
        a round trip to the database; slow ones one at a time, so no job waits behind a
        slow one that another worker could have run.
        """
        return max(2, min(self.read_ahead, int(0.1 / max(self._job_seconds, 1e-6))))

    def _timeout(self, sent, idle, next_poll, db_retry_at, outcomes) -> float:
        now = self.clock()
        candidates = [self.sleep_delay]
        if idle:
            candidates.append(next_poll - now)
        if db_retry_at > now:
            candidates.append(db_retry_at - now)
        elif outcomes:
            candidates.append(0)
        if sent and sent[0].deadline is not None:
            candidates.append(sent[0].deadline - now)
        return max(0.0, min(candidates))

    # -- database ----------------------------------------------------------------

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = api.engine(self.settings.database_url).connect()
            if conn.dialect.name == "postgresql":
                # Every statement of the worker's is safe on its own (each checks the
                # claim it acts on), so each commits by itself: one round trip, not three.
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:  # noqa: BLE001 - it is already broken
                pass
            self._conn = None

    def _transact(self, outcomes, counts, want, limit, claimed, maintenance, pending, sent,
                  child=None) -> list[ClaimedJob] | None:
        conn = self._connection()
        stamp = self.clock()  # no later than the locked_at written below
        now = _utcnow()
        jobs: list[ClaimedJob] = []
        held = None
        with conn.begin():
            done = self._record(conn, outcomes, now, claiming=want)
            if self._unsure:
                # A transaction failed: a claim may have committed without our hearing of it.
                # Rows locked by us that we do not know of never started; give them back.
                known = {j.id for j in pending} | {r.job.id for r in sent} | {o.job.id for o in outcomes}
                mine = conn.execute(text("SELECT id FROM delayed_jobs WHERE locked_by = :me"), {"me": self.name})
                self.claims.release(conn, [i for (i,) in mine if i not in known], now)
            # Jobs handed to the executor but not started are renewed too; lost ones are
            # held back, or revoked from the executor.
            waiting = [j.id for j in pending] + [r.job.id for r in sent if r.started is None]
            if maintenance:
                if waiting:
                    held = self.claims.renew(conn, waiting, now)
                self._recover(conn, now)
            if want:
                n = self._window() if limit is None else min(self._window(), limit - claimed)
                jobs = self.claims.claim(conn, n, now, complete=done)
        self._unsure = False
        for job_id in [j.id for j in jobs] + sorted(held or ()):
            self._fresh[job_id] = stamp
        for j in list(pending) if held is not None else ():
            if j.id not in held:
                pending.remove(j)
                self._say(f"Job (id={j.id}) was taken over by another worker before it started; skipped")
        for r in list(sent) if held is not None and child is not None else ():
            if r.started is None and r.job.id not in held:
                child.revoke(r.job.id)
                self._say(f"Job (id={r.job.id}) was taken over by another worker before it started; skipped")
        for o in outcomes:
            counts[0 if o.ok else 1] += 1
            self._report(o)
        outcomes.clear()
        if not sent and not pending:
            # Everything the executor finished is recorded and nothing is in its hands.
            journal.reset(self._journal)
        _flush()
        return jobs

    def _record(self, conn: Connection, outcomes: list[_Outcome], now: datetime, claiming: bool = False) -> list[int]:
        """Write every outcome but the plain successes when ``claiming`` (the claim deletes those);
        returns the successes' ids."""
        done = [o.job.id for o in outcomes if o.ok and not o.job.recurring]
        if not claiming:
            self.claims.complete(conn, done)
        for o in outcomes:
            if o.job.recurring:
                self.claims.reschedule(conn, o.job.id, next_run(o.job, now), now, o.error)
            elif not o.ok:
                self.claims.fail(conn, o.job.id, o.error or "", now, o.retry_at, self.settings.destroy_failed_jobs)
        return done

    def _recover(self, conn: Connection, now: datetime) -> None:
        claim.release_expired(conn, self.max_run_time, now, self.max_attempts)
        host = claim.hostname()
        prefix = f"host:{host} pid:"
        rows = conn.execute(
            text("SELECT DISTINCT locked_by FROM delayed_jobs WHERE locked_by LIKE :p"), {"p": prefix + "%"}
        )
        dead = []
        for (name,) in rows:
            pid = name[len(prefix):]
            if pid.isdigit() and not psutil.pid_exists(int(pid)):
                dead.append(name)
        if dead:
            claim.release_dead(conn, dead, "worker process died while running this job", now, self.max_attempts)

    def _report(self, o: _Outcome) -> None:
        name = o.name
        if o.ok:
            self._say(f"Job {name} (id={o.job.id}) COMPLETED")
        else:
            first = (o.error or "").splitlines()[0] if o.error else "unknown error"
            if o.retry_at is None and not o.job.recurring:
                self._say(f"Job {name} (id={o.job.id}) FAILED permanently because of {o.job.attempts} "
                          f"consecutive failures: {first}")
            else:
                self._say(f"Job {name} (id={o.job.id}) FAILED ({o.job.attempts - 1} prior attempts) with {first}")

    # -- the executor --------------------------------------------------------------

    def _handle(self, messages: list[dict], sent: deque[_Running], outcomes: list[_Outcome]) -> None:
        for msg in messages:
            if "s" in msg:
                running = sent[0] if sent[0].job.id == msg["s"] else next(r for r in sent if r.job.id == msg["s"])
                running.name = msg["name"]
                running.started = self.clock()
                running.max_attempts = msg["max_attempts"]
                limit = msg["max_run_time"]
                # Stopped before its claim could look expired to other workers, too.
                fresh = self._fresh.pop(running.job.id, running.started)
                expires = fresh + self.max_run_time.total_seconds()
                running.deadline = min(running.started + limit, expires) if limit else None
            else:
                running = sent.popleft()
                assert running.job.id == msg["r"], "executor answered out of order"
                if msg.get("skipped"):
                    continue
                if running.started is not None:
                    took = self.clock() - running.started
                    self._job_seconds += (took - self._job_seconds) * 0.2
                retry_at = executor.parse_time(msg.get("retry_at"))
                outcomes.append(_Outcome(running.job, running.name, msg["ok"], msg.get("error"), retry_at))

    def _enforce_deadline(self, child, sent, pending, outcomes):
        running = sent[0]
        if running.deadline is None or self.clock() < running.deadline:
            return child
        if not running.signalled:
            running.signalled = True
            child.signal(signal.SIGUSR2)
            running.deadline = self.clock() + self.kill_grace
            return child
        child.signal(signal.SIGKILL)
        child.reap()
        limit = self.max_run_time.total_seconds()
        self._child_died(f"stopped after exceeding max_run_time ({limit:g}s)", sent, pending, outcomes)
        return None

    def _child_died(self, how: str, sent, pending, outcomes, loading_counts: bool = False) -> None:
        """The executor is gone: the job it was running failed; the ones queued behind it go back.

        With ``loading_counts`` (it crashed rather than exiting when asked), the job it was
        still loading failed too: a job that kills its process on import must not loop.
        """
        if sent and (sent[0].started is not None or loading_counts):
            running = sent.popleft()
            job = running.job
            error = f"job process {how} while running this job"
            retry_at = None
            if job.attempts < running.max_attempts:
                retry_at = _utcnow() + timedelta(seconds=job.attempts**4 + 5)
            outcomes.append(_Outcome(job, running.name, False, error, retry_at))
        while sent:
            pending.appendleft(sent.pop().job)

    def _shutdown(self, child, pending, sent, outcomes, counts) -> None:
        """Leave nothing half-done: wait for the job in hand, record outcomes, give back the rest."""
        if child is not None:
            child.signal(signal.SIGUSR1)
            try:
                os.close(child.to_child)
            except OSError:
                pass
            # Read to the executor's end: a job whose start message still sits in the pipe
            # has run, and giving it back as unstarted would run it twice.
            while True:
                if sent and sent[0].started is not None:
                    limit = sent[0].deadline  # the job in hand may finish, up to its max_run_time
                else:
                    limit = self.clock() + self.kill_grace  # between jobs, it is about to exit
                wait = None if limit is None else max(0.0, limit - self.clock())
                ready, _, _ = select.select([child.from_child], [], [], wait)
                if not ready:
                    child.signal(signal.SIGKILL)
                    break
                messages = child.read()
                if messages is None:
                    break
                self._handle(messages, sent, outcomes)
            how = child.reap()
            if sent and sent[0].started is not None:
                self._child_died(how, sent, pending, outcomes)
        unstarted = [r.job.id for r in sent] + [j.id for j in pending]
        for attempt in range(3):
            try:
                conn = self._connection()
                now = _utcnow()
                with conn.begin():
                    self._record(conn, outcomes, now)
                    self.claims.release(conn, unstarted, now)
                for o in outcomes:
                    counts[0 if o.ok else 1] += 1
                    self._report(o)
                outcomes.clear()
                journal.discard(self._journal)
                break
            except DBAPIError as e:
                self._drop_connection()
                self._say(f"could not record outcomes ({_one_line(e)}); retrying")
                time.sleep(0.5 * (attempt + 1))
        self._drop_connection()


def _utcnow() -> datetime:
    return api.utc_naive(api.now())


def _one_line(e: BaseException) -> str:
    return str(getattr(e, "orig", e)).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _drain_fd(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
