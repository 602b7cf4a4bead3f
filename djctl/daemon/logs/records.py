"""The log as JSON lines, for log shippers: one object a line, with the Heroku line's parts
and a level, and for a job event the job's fields::

    {"ts": "2026-11-22T10:04:05.123456+00:00", "source": "app", "process": "worker.1",
     "level": "info", "message": "*** Starting job worker host:railgun pid:25794"}
    {"ts": "...", "source": "app", "process": "worker.1", "level": "warning",
     "message": "Job Mailer (id=7) failed after 0.0120s", "job_id": 7, "class": "Mailer",
     "queue": "mail", "outcome": "failed", "run_time": 0.012, "attempts": 1, "host": "railgun"}

A log is written in one format (``log_format``) and read in either: :func:`parse` takes a
line of either, :func:`render` writes a record in either. Job events exist only in a JSON
log (the text log has the worker's own report line instead), so text renders skip them.
Nothing read here is evaluated: a line is JSON or a Heroku line, or it is not a record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from djctl.daemon.logs.format import APP, LogLine

LEVELS = ("debug", "info", "warning", "error")
_OUTCOME_LEVEL = {"completed": "info", "failed": "warning", "failed_permanently": "error"}
_JOB_KEYS = ("job_id", "class", "queue", "outcome", "run_time", "waited", "attempts", "host")


@dataclass(frozen=True)
class Record:
    """One line of the log, whichever its format: a :class:`LogLine`, its level, and for a
    job event the job's fields (``job_id``, ``class``, ``queue``, ``outcome``, ``run_time``...)."""

    line: LogLine
    level: str = "info"
    job: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        at = self.line.at.astimezone(timezone.utc).isoformat(timespec="microseconds")
        data: dict[str, Any] = {"ts": at, "source": self.line.source, "process": self.line.proc,
                                "level": self.level, "message": self.line.message}
        data.update(self.job)
        return json.dumps(data, ensure_ascii=True, separators=(",", ":"))


def job_record(event: dict[str, Any], proc: str, at: datetime) -> Record:
    """The record of a job event (as :func:`djctl.daemon.logs.events.parse` gives it) that
    process ``proc`` reported."""
    outcome = str(event["event"])
    run_time = event.get("run_time")
    took = f" after {run_time:.4f}s" if isinstance(run_time, int | float) else ""
    word = "failed permanently" if outcome == "failed_permanently" else outcome
    message = f"Job {event.get('class')} (id={event.get('job_id')}) {word}{took}"
    job = {"job_id": event.get("job_id"), "class": event.get("class"), "queue": event.get("queue"),
           "outcome": outcome, "run_time": run_time}
    job.update({k: event[k] for k in ("waited", "attempts", "host") if k in event})
    return Record(LogLine(at, APP, proc, message), _OUTCOME_LEVEL.get(outcome, "info"), job)


def parse(text: str) -> Record | None:
    """The record on ``text``, a line of either format; None when it is neither."""
    if not text.startswith("{"):
        line = LogLine.parse(text)
        return None if line is None else Record(line)
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            return None
        at = datetime.fromisoformat(str(data["ts"])).astimezone(timezone.utc)
        line = LogLine(at, str(data["source"]), str(data["process"]), str(data.get("message", "")))
    except (ValueError, KeyError, TypeError, OverflowError):
        return None
    level = data.get("level")
    job = {k: data[k] for k in _JOB_KEYS if k in data}
    return Record(line, level if level in LEVELS else "info", job)


def render(text: str, fmt: str) -> str | None:
    """``text`` (a line of either format) as a line of ``fmt`` ("text" or "json"); None
    for a job event asked for as text, and for what is no record."""
    if fmt == "text" and not text.startswith("{"):
        return text
    record = parse(text)
    if record is None:
        return text if fmt == "text" else None
    if fmt == "json":
        return record.to_json()
    return None if record.job else record.line.render()
