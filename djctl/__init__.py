"""djctl: delayed_job for Python — a job queue in your database, a supervisor and a console.

    import djctl
    djctl.configure(database_url="postgresql://...", app="myapp")
    djctl.enqueue(NewsletterJob("lorem", emails), priority=0, queue="mail")
    djctl.delay(photo).upload(size=3)
    await djctl.aenqueue(job, session=async_session)   # from async code
"""

from djctl.api import configure, engine, now
from djctl.config import Settings
from djctl.enqueue import aenqueue, aenqueue_many, delay, enqueue, enqueue_many, handle_asynchronously, job
from djctl.schedules import schedule, unschedule
from djctl.worker.progress import progress
from djctl.worker.worker import Worker

__all__ = [
    "Settings",
    "Worker",
    "aenqueue",
    "aenqueue_many",
    "configure",
    "delay",
    "engine",
    "enqueue",
    "enqueue_many",
    "handle_asynchronously",
    "job",
    "now",
    "progress",
    "schedule",
    "unschedule",
]
