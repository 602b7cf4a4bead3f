"""What the worker's collaborators tell each other: the executor pipe's messages, and the
outcome of a run on its way to the database and the report.

Over the pipe each message is one JSON line; the keys stay short, for this is the hot
path (a no-op job costs a few of these):

    worker -> executor   Job      {"id", "handler", "attempts", "max_attempts", "max_run_time"}
    executor -> worker   Started  {"s": id, "name", "max_run_time", "max_attempts"}
                         Result   {"r": id, "ok": true}  |  {"r": id, "ok": false, "error", "retry_at"}
                         Skipped  {"r": id, "skipped": true}   (revoked before it started)
                         Left     {"r": id, "left": true, "error"}  (this worker may not run it)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from djctl.queue.claims import ClaimedJob

_dumps = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class Job:
    """Run this claimed job (worker -> executor)."""

    id: int
    handler: str
    attempts: int
    max_attempts: int
    max_run_time: float

    def encode(self) -> str:
        return _dumps({"id": self.id, "handler": self.handler, "attempts": self.attempts,
                       "max_attempts": self.max_attempts, "max_run_time": self.max_run_time}) + "\n"


@dataclass(frozen=True, slots=True)
class Started:
    """The job is loaded and starts now, under these limits (its own, within the worker's)."""

    id: int
    name: str
    max_run_time: float
    max_attempts: int

    def encode(self) -> str:
        return _dumps({"s": self.id, "name": self.name, "max_run_time": self.max_run_time,
                       "max_attempts": self.max_attempts}) + "\n"


@dataclass(frozen=True, slots=True)
class Result:
    """The job ran (or could not be loaded); ``retry_at`` (naive UTC) is None when the failure is final."""

    id: int
    ok: bool
    error: str | None = None
    retry_at: datetime | None = None

    def encode(self) -> str:
        if self.ok:
            return _dumps({"r": self.id, "ok": True}) + "\n"
        retry = None if self.retry_at is None else self.retry_at.isoformat()
        return _dumps({"r": self.id, "ok": False, "error": self.error, "retry_at": retry}) + "\n"


@dataclass(frozen=True, slots=True)
class Skipped:
    """The job was revoked before it started: it did not run."""

    id: int

    def encode(self) -> str:
        return _dumps({"r": self.id, "skipped": True}) + "\n"


@dataclass(frozen=True, slots=True)
class Left:
    """The job names code this worker may not run (it has no app configured): it did not
    run, and goes back for a worker that can run it, its attempt refunded."""

    id: int
    error: str

    def encode(self) -> str:
        return _dumps({"r": self.id, "left": True, "error": self.error}) + "\n"


Reply = Started | Result | Skipped | Left


def decode_job(line: bytes | str) -> Job:
    """A :class:`Job` from its line (the executor's end)."""
    m = json.loads(line)
    return Job(m["id"], m["handler"], m["attempts"], m["max_attempts"], m["max_run_time"])


def decode_reply(line: bytes | str) -> Reply:
    """A :class:`Started`, :class:`Result`, :class:`Skipped` or :class:`Left` from its line (the worker's end)."""
    m = json.loads(line)
    if "s" in m:
        return Started(m["s"], m["name"], m["max_run_time"], m["max_attempts"])
    if m.get("skipped"):
        return Skipped(m["r"])
    if m.get("left"):
        return Left(m["r"], m["error"])
    if m["ok"]:
        return Result(m["r"], True)
    return Result(m["r"], False, m.get("error"), _naive_utc(m.get("retry_at")))


def _naive_utc(text: str | None) -> datetime | None:
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one run of a claimed job ended, as the worker records and reports it.

    ``run_time`` is None when the job never started (it could not be loaded). A job
    ``left`` did not run: this worker may not run its code, and gives it back."""

    job: ClaimedJob
    name: str
    ok: bool
    error: str | None = None
    retry_at: datetime | None = None
    run_time: float | None = None
    left: bool = False
    waited: float | None = None
    """Seconds from when the job was due (its run_at) to its start; None when it never started."""

    @property
    def final(self) -> bool:
        """A failure with no retry: the job is marked failed (a recurring job is never final)."""
        return not self.ok and not self.left and self.retry_at is None and not self.job.recurring
