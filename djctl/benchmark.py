"""``djctl bench``: measure your own database the way bench/ measures djctl.

No-op jobs go to a queue of their own (``djctl-bench``), so the application's jobs are
neither run nor touched; whatever the run leaves there is deleted at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete

from djctl import api
from djctl.enqueue import enqueue, enqueue_many
from djctl.queue.schema import delayed_jobs
from djctl.worker.worker import Worker

QUEUE = "djctl-bench"


@dataclass
class Noop:
    """Does nothing: what is measured is the queue around it."""

    def perform(self) -> None:
        pass


@dataclass(frozen=True)
class Figures:
    enqueue_one: float
    enqueue_many: float
    process_one_worker: float


def run(jobs: int, echo: Callable[[str], None]) -> Figures:
    """Enqueue one by one, in bulk, and work off ``jobs`` no-op jobs with one worker; jobs/s each."""
    one = max(1, min(jobs, 500))
    try:
        started = time.perf_counter()
        for _ in range(one):
            enqueue(Noop(), queue=QUEUE)
        enqueue_one = one / (time.perf_counter() - started)
        _clear()
        started = time.perf_counter()
        for start in range(0, jobs, 1000):
            enqueue_many([Noop() for _ in range(min(1000, jobs - start))], queue=QUEUE)
        bulk = jobs / (time.perf_counter() - started)
        worker = Worker(queues=[QUEUE], log=lambda _line: None)
        started = time.perf_counter()
        done, failed = worker.work_off(jobs)
        process = (done + failed) / (time.perf_counter() - started)
    finally:
        _clear()
    figures = Figures(enqueue_one, bulk, process)
    echo(f"enqueue, one by one   {figures.enqueue_one:>10,.0f} jobs/s")
    echo(f"enqueue_many          {figures.enqueue_many:>10,.0f} jobs/s")
    echo(f"work off, one worker  {figures.process_one_worker:>10,.0f} jobs/s")
    return figures


def _clear() -> None:
    with api.engine().begin() as conn:
        conn.execute(delete(delayed_jobs).where(delayed_jobs.c.queue == QUEUE))
