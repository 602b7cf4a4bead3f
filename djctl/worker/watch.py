"""Watching the running job's claim, so that a job cancelled (``djctl cancel``), cleared
or taken over is stopped within a second, on whatever host it runs.

Renewals write, so they come only every few seconds; a cancel must not wait that long.
So while a job runs, every :data:`WATCH_EVERY` seconds the worker reads whether it still
holds the job's claim: one read by primary key, no lock (on SQLite, not the write lock
either). A job is first watched once it has run that long: quicker ones cost no read, and
a cancel that comes as one ends finds its claim gone when the worker records it.
"""

from __future__ import annotations

from djctl.queue.admin import CANCELLED

WATCH_EVERY = 0.5
"""Seconds between two looks at the running job's claim."""


class Watch:
    """When the running job's claim is due a look."""

    def __init__(self, every: float = WATCH_EVERY) -> None:
        self.every = every
        self._next = 0.0

    def due(self, now: float, running_for: float | None) -> bool:
        """Whether to look now (a job has run ``running_for`` seconds); if so, the next look
        is ``every`` seconds away."""
        if running_for is None or running_for < self.every or now < self._next:
            return False
        self._next = now + self.every
        return True

    def wait(self, now: float, running_for: float | None) -> float | None:
        """Seconds until the next look is due; None while no job runs."""
        if running_for is None:
            return None
        return max(0.0, self.every - running_for, self._next - now)


def stopped(name: str, job_id: int, last_error: str | None) -> str:
    """What the worker says when it stops a job whose claim is gone; ``last_error`` is
    as :meth:`djctl.queue.claims.Claims.lost` gives it (None: the row was deleted)."""
    if last_error is not None and last_error.startswith(CANCELLED):
        return f"Job {name} (id={job_id}) CANCELLED: {last_error.splitlines()[0]}; its executor was killed"
    if last_error is None:
        return f"Job {name} (id={job_id}) was deleted while it ran (djctl clear); its executor was killed"
    return f"Job {name} (id={job_id}) claim lost (taken over by another worker); stopped"
