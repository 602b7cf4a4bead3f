"""What a worker says about each job it finished: the report line every reader of the log
knows (``Job NewsletterJob (id=7) COMPLETED``), and a structured event for programs.

The events go, one JSON object per line, to the file descriptor named by ``DJCTL_EVENT_FD``
(the supervisor passes an inherited pipe): a channel job output cannot reach, for the
executor child closes it as it starts, and printing a report-like line proves nothing.
Without the variable no event is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Literal

from djctl import clock
from djctl.worker.messages import Outcome

ENV = "DJCTL_EVENT_FD"
Kind = Literal["completed", "failed", "failed_permanently"]


def line(o: Outcome) -> str:
    """The report line of ``o`` (without the worker's ``[Worker(...)]`` prefix)."""
    if o.ok:
        took = "" if o.run_time is None else f" after {o.run_time:.4f}"
        return f"Job {o.name} (id={o.job.id}) COMPLETED{took}"
    first = o.error.splitlines()[0] if o.error else "unknown error"
    if o.left:
        return f"Job {o.name} (id={o.job.id}) LEFT for a worker that can run it: {first}"
    if o.final:
        return (f"Job {o.name} (id={o.job.id}) FAILED permanently because of {o.job.attempts} "
                f"consecutive failures: {first}")
    return f"Job {o.name} (id={o.job.id}) FAILED ({o.job.attempts - 1} prior attempts) with {first}"


@dataclass(frozen=True)
class Event:
    """One finished run, as the event channel carries it. ``run_time`` (seconds) is None
    when the job never started; ``ts`` is ISO 8601, timezone-aware UTC; ``waited`` is the
    enqueue-to-start delay: seconds from when the job was due (its run_at) to its start."""

    event: Kind
    job_id: int
    job_class: str
    queue: str | None
    attempts: int
    run_time: float | None
    ts: str
    waited: float | None = None

    @classmethod
    def of(cls, o: Outcome) -> Event:
        kind: Kind = "completed" if o.ok else "failed_permanently" if o.final else "failed"
        return cls(kind, o.job.id, o.name, o.job.queue, o.job.attempts, o.run_time, clock.now().isoformat(),
                   None if o.run_time is None else o.waited)

    def to_json(self) -> str:
        """One line of JSON (no newline); the class travels as ``"class"``."""
        data = asdict(self)
        data["class"] = data.pop("job_class")
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Event:
        """The event of one line; ValueError (or KeyError) when it is not one."""
        data = json.loads(text)
        if data.get("event") not in ("completed", "failed", "failed_permanently"):
            raise ValueError(f"not a djctl event: {text.strip()[:80]!r}")
        return cls(data["event"], int(data["job_id"]), str(data["class"]), data.get("queue"),
                   int(data["attempts"]), data.get("run_time"), str(data["ts"]), data.get("waited"))


class Events:
    """The write end of the event channel, or nothing. Never blocks the worker: when the
    reader falls a whole pipe behind, events are dropped rather than jobs delayed."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    @classmethod
    def from_env(cls, env: Mapping[str, str], warn: Callable[[str], None]) -> Events:
        """The channel named by ``DJCTL_EVENT_FD`` in ``env``; a value that is no open file
        descriptor is reported with ``warn`` (one line) and leaves events off."""
        value = env.get(ENV)
        if not value:
            return cls(None)
        try:
            fd = int(value)
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        except (ValueError, OSError):
            warn(f"{ENV}={value!r} is not an open file descriptor; structured events are off")
            return cls(None)
        return cls(fd)

    def inherited(self) -> tuple[int, ...]:
        """The fds a forked child must close at once, so that job code cannot write events."""
        return () if self.fd is None else (self.fd,)

    def send(self, event: Event) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, (event.to_json() + "\n").encode())
        except BlockingIOError:
            pass  # the reader is a pipe behind: losing a count beats stalling jobs
        except OSError:
            self.fd = None  # the reader is gone for good


def throughput(jobs: int, seconds: float, failed: int) -> str:
    """The periodic line of a long-running worker: ``N jobs processed at X j/s, M failed``."""
    return f"{jobs} jobs processed at {jobs / max(seconds, 1e-9):.4f} j/s, {failed} failed"


class Report:
    """Says each outcome, once it is recorded: its report line through ``say``, and its
    event when asked for. (The RUN line comes from the executor when it shares our output,
    so that it precedes the job's own output; COMPLETED is only said here, after the
    database has the outcome — never by the process that ran the job.)"""

    def __init__(self, say: Callable[[str], None], events: Events) -> None:
        self.say = say
        self.events = events

    def started(self, name: str, job_id: int) -> None:
        """Say that the job starts (when the executor does not say it)."""
        self.say(f"Job {name} (id={job_id}) RUN")

    def outcome(self, o: Outcome) -> None:
        self.say(line(o))
        # A job left did not run: it is no finished run to count.
        if self.events.fd is not None and not o.left:  # no event to build on the hot path when nobody listens
            self.events.send(Event.of(o))
