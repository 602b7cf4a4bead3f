"""djctl: delayed_job for Python — a job queue in your database, a supervisor and a console.

    import djctl
    djctl.configure(database_url="postgresql://...", app="myapp")
    djctl.enqueue(NewsletterJob("lorem", emails), priority=0, queue="mail")
    djctl.delay(photo).upload(size=3)
"""

from djctl.api import configure, engine, now
from djctl.config import Settings
from djctl.enqueue import delay, enqueue, enqueue_many, handle_asynchronously, job
from djctl.schedules import schedule, unschedule
from djctl.worker.worker import Worker

__all__ = [
    "Settings",
    "Worker",
    "configure",
    "delay",
    "engine",
    "enqueue",
    "enqueue_many",
    "handle_asynchronously",
    "job",
    "now",
    "schedule",
    "unschedule",
]
