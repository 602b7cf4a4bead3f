"""Sample jobs for ``djctl demo``: quick ones, slow ones, scheduled ones and some that fail."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from djctl import api
from djctl.enqueue import enqueue_many

# The demo's jobs live on queues of their own, and its workers work only those: pointed
# at an application's database, the demo neither runs nor fails the application's jobs.
QUEUES = ("demo", "demo-mail")
TYPES = {"worker": f"djctl work --queues {','.join(QUEUES)}"}


@dataclass
class ResizePhoto:
    """A quick job."""

    photo_id: int
    size: int = 640
    queue_name = "demo"

    def perform(self) -> None:
        time.sleep(0.01)


@dataclass
class SendNewsletter:
    """A slower job on its own queue."""

    text: str
    emails: list[str]
    queue_name = "demo-mail"

    def perform(self) -> None:
        time.sleep(0.05 * len(self.emails))


@dataclass
class ImportCsv:
    """A job that fails: its retries follow delayed_job's backoff."""

    path: str
    max_attempts = 3
    queue_name = "demo"

    def perform(self) -> None:
        raise FileNotFoundError(f"no such file: {self.path}")


def sample_jobs(count: int, rng: random.Random) -> list[tuple[object, dict]]:
    """``count`` jobs with their enqueue options, a realistic mix."""
    jobs: list[tuple[object, dict]] = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.6:
            jobs.append((ResizePhoto(i, rng.choice([320, 640, 1280])), {"priority": rng.choice([0, 0, 5])}))
        elif roll < 0.8:
            emails = [f"user{j}@example.com" for j in range(rng.randint(1, 4))]
            jobs.append((SendNewsletter("lorem ipsum", emails), {"priority": 10}))
        elif roll < 0.9:
            jobs.append((ImportCsv(f"/tmp/import-{i}.csv"), {}))
        else:
            later = api.now() + timedelta(minutes=rng.randint(5, 60))
            jobs.append((ResizePhoto(i), {"run_at": later}))
    return jobs


def enqueue_samples(count: int, seed: int = 1) -> int:
    rng = random.Random(seed)
    total = 0
    groups: dict[tuple, list] = {}
    for job, opts in sample_jobs(count, rng):
        key = tuple(sorted(opts.items(), key=lambda kv: kv[0]))
        groups.setdefault(key, []).append(job)
    for key, jobs in groups.items():
        total += len(enqueue_many(jobs, **dict(key)))
    return total


def feed(stop: threading.Event, per_second: float = 4.0, seed: int = 2) -> None:
    """Keep enqueuing a trickle of sample jobs until ``stop`` is set, so the console shows traffic."""
    rng = random.Random(seed)
    while not stop.wait(1.0 / per_second):
        for job, opts in sample_jobs(1, rng):
            enqueue_many([job], **opts)


def watch(echo: Callable[[str], None], timeout: float = 120.0) -> None:
    """Print the queue's depth every second until nothing is ready or running."""
    from sqlalchemy import text

    deadline = time.monotonic() + timeout
    query = text(
        "SELECT SUM(CASE WHEN failed_at IS NULL AND locked_at IS NULL AND run_at <= :now THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN locked_at IS NOT NULL AND failed_at IS NULL THEN 1 ELSE 0 END), COUNT(*) FROM delayed_jobs"
    )
    while time.monotonic() < deadline:
        with api.engine().connect().execution_options(sqlite_read=True) as conn:
            ready, running, total = conn.execute(query, {"now": api.utc_naive(api.now())}).one()
        echo(f"ready {ready or 0:>5}  running {running or 0:>3}  in the table {total:>5}")
        if not ready and not running:
            return
        time.sleep(1.0)


def clean_up(engine: Engine, own: bool) -> str:
    """Take away what the demo left: its own database file (``own``), else its sample
    jobs from the database it was pointed at. Returns what was done, in one line."""
    url = engine.url
    engine.dispose()
    if own and url.get_backend_name() == "sqlite" and url.database:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(url.database + suffix).unlink(missing_ok=True)
        return f"Removed the demo's database {url.database}."
    from sqlalchemy import text

    with engine.begin() as conn:
        gone = conn.execute(text("DELETE FROM delayed_jobs WHERE handler LIKE :demo"),
                            {"demo": f"%{__name__}:%"}).rowcount
    return f"Deleted the {gone} sample jobs left in {url.render_as_string(hide_password=True)}."
