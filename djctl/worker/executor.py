"""The child process that runs jobs for a worker, so that no job can take its worker down with it.

The worker (parent) claims jobs and records outcomes; this process only decodes and
performs them. Over a pair of pipes, one JSON line per message:

    parent -> child   {"id", "handler", "attempts", "max_attempts", "max_run_time"}
    child -> parent   {"s": id, "name", "max_run_time", "max_attempts"}    the job starts
                      {"r": id, "ok": true}                                 it succeeded
                      {"r": id, "ok": false, "error", "retry_at" | null}    it failed

A job stuck past its max_run_time gets SIGUSR2 (raising JobTimeout where Python can)
and then, if it still does not return, SIGKILL from the parent — which is how even a
job blocked in C code or a system call is stopped. SIGUSR1 asks the child to exit after
the current job; so do SIGTERM and SIGINT, which reach it when a whole process group is
signalled (Ctrl-C, systemd): the job in hand is never interrupted by them.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from djctl import api, config, payload, proctitle
from djctl.queue import engines as store
from djctl.handlers import LoadedJob, load
from djctl.worker.journal import Journal


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


class _Writer:
    def __init__(self, fd: int):
        self.fd = fd

    def send(self, msg: dict) -> None:
        data = (json.dumps(msg, separators=(",", ":"), default=str) + "\n").encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]


def _outcome(job: LoadedJob, msg: dict) -> dict:
    global _running
    attempts = msg["attempts"]
    job_id = msg["id"]
    _running = True
    try:
        job.hook("before")
        job.perform()
        job.hook("success")
        return {"r": job_id, "ok": True}
    except BaseException as exc:  # noqa: BLE001 - a job may raise anything, SystemExit included
        _running = False
        permanent = isinstance(exc, payload.RecordNotFound) or attempts >= job.max_attempts(msg["max_attempts"])
        error = error_text(exc)
        _safe_hook(job, "error", exc)
        retry_at = None
        if not permanent:
            now = api.now()
            try:
                retry_at = api.utc_naive(job.reschedule_at(attempts, now)).isoformat()
            except Exception as hook_exc:  # noqa: BLE001
                error += f"\n(reschedule_at failed: {hook_exc!r}; using the default backoff)"
                retry_at = api.utc_naive(now + timedelta(seconds=attempts**4 + 5)).isoformat()
        else:
            _safe_hook(job, "failure")
        return {"r": job_id, "ok": False, "error": error, "retry_at": retry_at}
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
          journal: "Journal | None" = None) -> None:
    """The child's loop: run each job the parent sends, until the pipe closes or SIGUSR1."""
    signal.signal(signal.SIGINT, _on_usr1)
    signal.signal(signal.SIGTERM, _on_usr1)
    signal.signal(signal.SIGUSR1, _on_usr1)
    signal.signal(signal.SIGUSR2, _on_usr2)
    _die_with_parent()
    store.dispose_inherited()
    out = _Writer(write_fd)
    decoder = payload.Decoder(payload.allowed_packages())
    revoked: set[int] = set()
    with os.fdopen(read_fd, "rb", buffering=1 << 16) as incoming:
        for line in incoming:
            if _stopping:
                break
            msg = json.loads(line)
            if msg["id"] in _revoked(revoke_fd, revoked):
                out.send({"r": msg["id"], "skipped": True})
                continue
            try:
                job = load(msg["handler"], decoder)
            except payload.HandlerError as exc:
                api.end_orm_session()
                out.send({"s": msg["id"], "name": "?", "max_run_time": 0, "max_attempts": msg["max_attempts"]})
                out.send({"r": msg["id"], "ok": False, "error": f"{type(exc).__name__}: {exc}", "retry_at": None})
                continue
            except Exception as exc:  # noqa: BLE001 - importing the job's module may raise anything
                api.end_orm_session()
                out.send({"s": msg["id"], "name": "?", "max_run_time": 0, "max_attempts": msg["max_attempts"]})
                out.send({"r": msg["id"], "ok": False, "error": error_text(exc), "retry_at": None})
                continue
            limit = job.max_run_time(timedelta(seconds=msg["max_run_time"])).total_seconds()
            max_attempts = job.max_attempts(msg["max_attempts"])
            if journal is not None:
                journal.started(msg["id"])
            out.send({"s": msg["id"], "name": job.name, "max_run_time": limit, "max_attempts": max_attempts})
            if msg["attempts"] > max_attempts:
                out.send({"r": msg["id"], "ok": False, "error": "attempts exhausted", "retry_at": None})
                continue
            proctitle.set_title(proctitle.job_title(msg["id"], job.target, job.name))
            result = _outcome(job, msg)
            proctitle.set_title(proctitle.executor_title())
            if result["ok"] and journal is not None:
                journal.finished(msg["id"])
            out.send(result)
            if _stopping:
                break
    os._exit(0)


def spawn(settings: "config.Settings | None" = None,
          journal_file: "Path | None" = None) -> tuple[int, int, int, int]:
    """Fork an executor working under ``settings`` (default: the current ones).

    Returns (pid, fd to write jobs to, fd to read messages from, fd to revoke jobs on):
    a job id written to the last one, newline-terminated, is skipped if it has not
    started yet — the worker lost its claim while the job waited in the pipe.
    """
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    revoke_r, revoke_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(to_child_w)
            os.close(from_child_r)
            os.close(revoke_w)
            os.set_blocking(revoke_r, False)
            if settings is not None:
                # Its worker's allowed packages and database, not the process default.
                config.set_current(settings)
            serve(to_child_r, from_child_w, revoke_r, Journal(journal_file) if journal_file else None)
        finally:
            os._exit(1)
    os.close(to_child_r)
    os.close(from_child_w)
    os.close(revoke_r)
    return pid, to_child_w, from_child_r, revoke_w


def _revoked(fd: int | None, into: set[int]) -> set[int]:
    if fd is None:
        return into
    try:
        while chunk := os.read(fd, 4096):
            into.update(int(x) for x in chunk.split())
    except BlockingIOError:
        pass
    return into


def parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
