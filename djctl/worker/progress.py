"""``djctl.progress(fraction, message=None)``: a running job says how far it has got.

The executor child binds the channel to its pipe to the worker while a job runs; a call
writes one short line on it (no database write), which the worker passes on to its
supervisor's ``ps`` and the console. Calls closer together than :data:`EVERY` seconds
are folded: the latest is sent when the interval is over (by a timer), so a job calling
it in a tight loop costs a few writes a second and the last value always arrives. Outside
a job run by a worker a call does nothing.
"""

from __future__ import annotations

import math
import os
import threading
import time

from djctl.worker.messages import Progress

EVERY = 0.2
MAX_MESSAGE = 200

# One lock over the channel: a timer's write never overlaps unbind(), after which the
# executor writes the job's result on the same pipe (a long result is no atomic write).
_lock = threading.Lock()
_fd: int | None = None
_job_id: int | None = None
_last = 0.0
_pending: Progress | None = None
_timer: threading.Timer | None = None


def bind(fd: int, job_id: int) -> None:
    """From now on, progress is job ``job_id``'s and goes to ``fd`` (the executor's pipe)."""
    global _fd, _job_id, _last, _pending
    with _lock:
        _fd, _job_id, _last, _pending = fd, job_id, 0.0, None


def unbind() -> None:
    """The job is over: a report not yet sent is dropped, and later calls do nothing."""
    global _fd, _job_id, _pending, _timer
    with _lock:
        _fd = _job_id = _pending = None
        if _timer is not None:
            _timer.cancel()
            _timer = None


def progress(fraction: float, message: str | None = None) -> None:
    """Report the running job's progress: ``fraction`` from 0 to 1, and a short ``message``.

    Shown in ``djctl ps`` and ``djctl top`` within a second or two; costs no database write.
    ValueError for a fraction outside 0..1, TypeError for one that is no number or a
    message that is no string."""
    global _pending, _timer
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TypeError(f"progress fraction must be a number from 0 to 1, not {type(fraction).__name__}")
    if math.isnan(fraction) or not 0 <= fraction <= 1:
        raise ValueError(f"progress fraction must be from 0 to 1 (got {fraction!r})")
    if message is not None and not isinstance(message, str):
        raise TypeError(f"progress message must be a string or None, not {type(message).__name__}")
    with _lock:
        if _fd is None or _job_id is None:
            return
        text = None if message is None else " ".join(message.split())[:MAX_MESSAGE]
        _pending = Progress(_job_id, float(fraction), text)
        wait = _last + EVERY - time.monotonic()
        if wait <= 0:
            _send()
        elif _timer is None:
            _timer = threading.Timer(wait, _flush)
            _timer.daemon = True
            _timer.start()


def _flush() -> None:
    global _timer
    with _lock:
        _timer = None
        if _pending is not None and _fd is not None:
            _send()


def _send() -> None:
    """Write the pending report (the lock held)."""
    global _last, _pending
    assert _fd is not None and _pending is not None
    report, _pending, _last = _pending, None, time.monotonic()
    try:
        os.write(_fd, report.encode().encode())
    except OSError:
        pass  # the worker is gone; the job's own outcome decides what happens next
