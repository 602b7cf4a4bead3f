"""The child process that runs jobs for a worker, so that no job can take its worker down with it.

The worker (parent) claims jobs and records outcomes; this process only decodes and
performs them. Over a pair of pipes go the messages of messages.py, one JSON line each;
:class:`Child` is the parent's end.

A job stuck past its max_run_time gets SIGUSR2 (raising JobTimeout where Python can)
and then, if it still does not return, SIGKILL from the parent — which is how even a
job blocked in C code or a system call is stopped. SIGUSR1 asks the child to exit after
the current job; so do SIGTERM and SIGINT, which reach it when a whole process group is
signalled (Ctrl-C, systemd): the job in hand is never interrupted by them.

Whatever a job leaves behind goes with it: the child is the subreaper of every process a
job starts (descendants.py), kills them all after each job and is killed with them; and
it puts back its stdin, stdout and stderr after each job, for a job may close them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from djctl import api, clock, config, payload, proctitle
from djctl.handlers import LoadedJob, default_backoff, load, target_name
from djctl.queue import engines as store
from djctl.worker import descendants
from djctl.worker.journal import Journal
from djctl.worker.messages import Job, Left, Reply, Result, Skipped, Started, decode_job, decode_reply


class JobTimeout(Exception):
    """The job ran past its max_run_time."""


_stopping = False
_running = False


def _on_usr1(_sig, _frame) -> None:
    global _stopping
    _stopping = True


def _on_usr2(_sig, _frame) -> None:
    if _running:
        raise JobTimeout("job exceeded its max_run_time and was stopped")


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def error_text(exc: BaseException) -> str:
    """``Class: message`` then the traceback, as last_error keeps it."""
    head = f"{type(exc).__name__}: {exc}"
    return head + "\n" + "".join(traceback.format_exception(exc)).rstrip()


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _outcome(job: LoadedJob, msg: Job) -> Result:
    global _running
    attempts = msg.attempts
    _running = True
    try:
        job.hook("before")
        job.perform()
        job.hook("success")
        return Result(msg.id, True)
    except BaseException as exc:  # noqa: BLE001 - a job may raise anything, SystemExit included
        _running = False
        permanent = isinstance(exc, payload.RecordNotFound) or attempts >= job.max_attempts(msg.max_attempts)
        error = error_text(exc)
        _safe_hook(job, "error", exc)
        retry_at = None
        if not permanent:
            now = clock.now()
            try:
                retry_at = clock.utc_naive(job.reschedule_at(attempts, now))
            except Exception as hook_exc:  # noqa: BLE001
                error += f"\n(reschedule_at failed: {hook_exc!r}; using the default backoff)"
                retry_at = clock.utc_naive(now + default_backoff(attempts))
        else:
            _safe_hook(job, "failure")
        return Result(msg.id, False, error, retry_at)
    finally:
        _running = False
        _safe_hook(job, "after")
        api.end_orm_session()


def _safe_hook(job: LoadedJob, name: str, *args: Any) -> None:
    try:
        job.hook(name, *args)
    except Exception:  # noqa: BLE001 - a broken hook must not change the job's outcome
        traceback.print_exc()


def serve(read_fd: int, write_fd: int, revoke_fd: int | None = None,
          journal: Journal | None = None, say: str | None = None) -> None:
    """The child's loop: run each job the parent sends, until the pipe closes or SIGUSR1.

    With ``say`` (the worker's log prefix), the child writes each job's ``RUN`` line and,
    when it succeeds, its ``COMPLETED after`` line to stdout itself: the worker shares that
    stdout, and only the child can put them around the job's own output in order."""
    signal.signal(signal.SIGINT, _on_usr1)
    signal.signal(signal.SIGTERM, _on_usr1)
    signal.signal(signal.SIGUSR1, _on_usr1)
    signal.signal(signal.SIGUSR2, _on_usr2)
    _die_with_parent()
    store.dispose_inherited()
    decoder = payload.Decoder(payload.allowed_packages(), load_orm=api.load_orm)
    revoked: set[int] = set()
    std = _StdStreams()
    with os.fdopen(read_fd, "rb", buffering=1 << 16) as incoming:
        for line in incoming:
            if _stopping or not line.endswith(b"\n"):
                break  # a line cut short: the worker closed the pipe mid-way, stopping
            msg = decode_job(line)
            if msg.id in _revoked(revoke_fd, revoked):
                # A revocation is for the copy in the pipe now: the job may come again,
                # claimed anew.
                revoked.discard(msg.id)
                _write(write_fd, Skipped(msg.id).encode().encode())
                continue
            _run_one(msg, decoder, journal, write_fd, std, say)
            if _stopping:
                break
    os._exit(0)


class _StdStreams:
    """Copies of fds 0, 1 and 2 and of sys.stdout/sys.stderr, put back after each job."""

    def __init__(self) -> None:
        # os.dup's copies are not inherited: a job's subprocesses cannot hold them.
        self.fds = [os.dup(fd) for fd in (0, 1, 2)]
        self.stdout, self.stderr = sys.stdout, sys.stderr

    def restore(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # closed, or its fd closed under it
                stream.flush()
        for fd, copy in enumerate(self.fds):
            os.dup2(copy, fd)
        sys.stdout = self.stdout if not self.stdout.closed else _reopen(1)
        sys.stderr = self.stderr if not self.stderr.closed else _reopen(2)
        self.stdout, self.stderr = sys.stdout, sys.stderr


def _reopen(fd: int) -> Any:
    return open(fd, "w", buffering=1, closefd=False, errors="backslashreplace")


def _after_job(std: _StdStreams) -> None:
    """Put back what a job may have taken: its leftover processes killed, the std fds restored."""
    descendants.reap_children()
    if descendants.children(os.getpid()):
        descendants.kill_descendants(os.getpid(), reap=True)
    std.restore()


def _run_one(msg: Job, decoder: payload.Decoder, journal: Journal | None, out: int,
             std: _StdStreams, say: str | None = None) -> None:
    """Load and perform one job, telling the parent as it starts and as it ends."""
    try:
        job = load(msg.handler, decoder)
    except Exception as exc:  # noqa: BLE001 - importing the job's module may raise anything
        api.end_orm_session()
        _write(out, _unloadable(msg, exc).encode())
        return
    limit = job.max_run_time(timedelta(seconds=msg.max_run_time)).total_seconds()
    max_attempts = job.max_attempts(msg.max_attempts)
    if journal is not None:
        journal.started(msg.id)
    # Sent before the job runs: the parent's deadline starts now.
    _write(out, Started(msg.id, job.name, limit, max_attempts).encode().encode())
    if msg.attempts > max_attempts:
        _write(out, Result(msg.id, False, "attempts exhausted").encode().encode())
        return
    if say is not None:
        _print(f"{say}Job {job.name} (id={msg.id}) RUN")
    proctitle.set_title(proctitle.job_title(msg.id, job.target, job.name))
    result = _outcome(job, msg)
    proctitle.set_title(proctitle.executor_title())
    # Before the result: once the worker reads it, nothing of this job may still run, and
    # the job's own output (flushed here) is in the log before the worker's COMPLETED line.
    _after_job(std)
    if result.ok and journal is not None:
        journal.finished(msg.id)
    _write(out, result.encode().encode())


def _print(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass  # nobody reads the log any more; the job's outcome still goes to the worker


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _unloadable(msg: Job, exc: Exception) -> str:
    """The replies for a job that could not be loaded: left for another worker when this
    one has no app configured; retried when its module does not import or its name is
    missing (a deploy may be under way, or a fix on its way); failed for good otherwise
    (the handler itself is malformed)."""
    error = error_text(exc)
    if isinstance(exc, payload.HandlerError):
        # The finer kinds are for deciding here; the log and last_error keep one name.
        kind = "HandlerError" if isinstance(exc, (payload.NotAllowed, payload.MissingName, payload.Unimportable)) \
            else type(exc).__name__
        error = f"{kind}: {exc}"
    settings = config.current()
    if isinstance(exc, payload.NotAllowed) and not (settings.app or settings.allow):
        return Left(msg.id, error).encode()
    retry_at = None
    if isinstance(exc, (payload.MissingName, payload.Unimportable)) and msg.attempts < msg.max_attempts:
        retry_at = clock.utc_naive(clock.now() + default_backoff(msg.attempts))
    started = Started(msg.id, target_name(msg.handler), 0, msg.max_attempts)
    return started.encode() + Result(msg.id, False, error, retry_at).encode()


def spawn(settings: config.Settings | None = None, journal_file: Path | None = None,
          close: Sequence[int] = (), say: str | None = None) -> tuple[int, int, int, int]:
    """Fork an executor working under ``settings`` (default: the current ones). The fds
    ``close`` are closed in the child first thing, so no job code can reach them; ``say``
    is as for :func:`serve`.

    Returns (pid, fd to write jobs to, fd to read messages from, fd to revoke jobs on):
    a job id written to the last one, newline-terminated, is skipped if it has not
    started yet — the worker lost its claim while the job waited in the pipe.
    """
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    revoke_r, revoke_w = os.pipe()
    _flush_output()  # or the child would write the worker's buffered lines a second time
    pid = os.fork()
    if pid == 0:
        try:
            for fd in (*close, to_child_w, from_child_r, revoke_w):
                os.close(fd)
            os.set_blocking(revoke_r, False)
            descendants.become_subreaper()
            if settings is not None:
                # Its worker's allowed packages and database, not the process default.
                config.set_current(settings)
            serve(to_child_r, from_child_w, revoke_r, Journal(journal_file) if journal_file else None, say)
        finally:
            os._exit(1)
    os.close(to_child_r)
    os.close(from_child_w)
    os.close(revoke_r)
    return pid, to_child_w, from_child_r, revoke_w


class Child:
    """The worker's end of one executor child: send jobs, read replies, signal, reap."""

    def __init__(self, settings: config.Settings, journal_file: Path | None = None,
                 close: Sequence[int] = (), say: str | None = None) -> None:
        self.pid, self.to_child, self.from_child, self.revoke_fd = spawn(settings, journal_file, close, say)
        # Never blocking on the child: while it runs a job it reads nothing, and a worker
        # stuck in write() could not stop that job at its max_run_time, renew or stop.
        os.set_blocking(self.to_child, False)
        self.outbox = bytearray()
        """Jobs sent but not yet taken by the pipe; written by :meth:`flush`."""
        self.buffer = b""
        self.crashed = False

    def revoke(self, job_id: int) -> None:
        """Skip this job if it has not started: its claim was lost while it waited."""
        try:
            os.write(self.revoke_fd, f"{job_id}\n".encode())
        except OSError:
            pass  # the child is gone; the job goes back with the rest

    def send(self, jobs: Sequence[Job]) -> None:
        """Queue ``jobs`` for the child without blocking: what its pipe cannot take now
        waits in :attr:`outbox` until :meth:`flush` (call it when the pipe is writable)."""
        self.outbox += "".join(j.encode() for j in jobs).encode()
        self.flush()

    def flush(self) -> None:
        """Write as much of :attr:`outbox` as the pipe takes now."""
        try:
            while self.outbox:
                del self.outbox[:os.write(self.to_child, self.outbox)]
        except BlockingIOError:
            pass
        except OSError:
            self.outbox.clear()  # the child is gone: its EOF, read next, puts the jobs back

    def kill(self) -> None:
        """SIGKILL the child and every process its jobs started, in whatever group or
        session they went to; stopped first, so that none of them can fork meanwhile."""
        self.signal(signal.SIGSTOP)
        descendants.kill_descendants(self.pid)
        self.signal(signal.SIGKILL)

    def read(self) -> list[Reply] | None:
        """Replies available now; None once the child has gone (EOF)."""
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
        return [decode_reply(line) for line in lines if line]

    def unrevoke(self, job_id: int) -> None:
        """Forget a revocation that came too late (the job had started): it must not
        skip the job when it comes again."""
        try:
            os.write(self.revoke_fd, f"-{job_id}\n".encode())
        except OSError:
            pass

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def close_input(self) -> None:
        """No more jobs: the child ends after the ones already in its pipe (the jobs
        still in :attr:`outbox` are never sent; they go back as not started)."""
        self.outbox.clear()
        try:
            os.close(self.to_child)
        except OSError:
            pass
        self.to_child = -1  # closed twice, the number might be another file's by then

    def reap(self) -> str:
        """Wait for the child to exit; how it ended, in words. Sets ``crashed`` unless it
        exited with status 0."""
        for fd in (self.to_child, self.from_child, self.revoke_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.to_child = self.from_child = self.revoke_fd = -1
        _, status = os.waitpid(self.pid, 0)
        self.crashed = not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            return f"killed by signal {sig} ({signal.Signals(sig).name})"
        return f"exited with status {os.WEXITSTATUS(status)}"


def _revoked(fd: int | None, into: set[int]) -> set[int]:
    if fd is None:
        return into
    try:
        while chunk := os.read(fd, 4096):
            for word in chunk.split():
                n = int(word)
                if n < 0:
                    into.discard(-n)
                else:
                    into.add(n)
    except BlockingIOError:
        pass
    return into
