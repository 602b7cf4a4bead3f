"""The events file: one JSON object a line, each a job outcome that a process reported
on its event pipe (``DJCTL_EVENT_FD``), stamped by the supervisor with the process and
the host it ran on::

    {"event": "completed", "job_id": 7, "class": "Mailer", "queue": null, "attempts": 0,
     "run_time": 0.012, "ts": "2026-11-22T10:04:05.123456+00:00", "process": "worker.1", "host": "railgun"}

Nothing here is ever unpickled or evaluated: a line is JSON or it is dropped.
"""

from __future__ import annotations

import json
from typing import Any

COMPLETED = "completed"
FAILED = "failed"
FAILED_PERMANENTLY = "failed_permanently"
OUTCOMES = (COMPLETED, FAILED, FAILED_PERMANENTLY)

# Longer than any real event; a longer line is not an event.
MAX_EVENT = 64 * 1024


def stamp(raw: str, process: str, host: str) -> str | None:
    """The events-file line for ``raw`` (what a process wrote on its event pipe), with
    ``process`` and ``host`` set by the supervisor (whatever the process claimed); None
    when ``raw`` is not a JSON object naming one of :data:`OUTCOMES`."""
    if len(raw) > MAX_EVENT:
        return None
    event = parse(raw)
    if event is None:
        return None
    event["process"] = process
    event["host"] = host
    return json.dumps(event, ensure_ascii=True, separators=(", ", ": "))


def parse(line: str) -> dict[str, Any] | None:
    """The event on ``line``, or None when it is not a JSON object naming one of
    :data:`OUTCOMES` (a reader skips such lines)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("event") not in OUTCOMES:
        return None
    return event


PROGRESS = "progress"
MAX_PROGRESS_MESSAGE = 200


def progress_of(line: str) -> dict[str, Any] | None:
    """The progress report on ``line`` (``{"job_id", "class", "fraction", "message"}``),
    checked field by field, or None when the line is no progress report."""
    if len(line) > MAX_EVENT:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("event") != PROGRESS:
        return None
    job_id, fraction, message = event.get("job_id"), event.get("fraction"), event.get("message")
    if not isinstance(job_id, int) or isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        return None
    if not 0 <= fraction <= 1 or not (message is None or isinstance(message, str)):
        return None
    return {"job_id": job_id, "class": str(event.get("class") or "?")[:255], "fraction": float(fraction),
            "message": None if message is None else message[:MAX_PROGRESS_MESSAGE]}
