"""djctl: delayed_job for Python — a job queue in your database, a supervisor and a console.

    import djctl
    djctl.configure(database_url="postgresql://...", app="myapp")
    djctl.enqueue(NewsletterJob("lorem", emails), priority=0, queue="mail")
    djctl.delay(photo).upload(size=3)
    await djctl.aenqueue(job, session=async_session)   # from async code
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from djctl.api import configure, engine, now
    from djctl.config import Settings
    from djctl.enqueue import aenqueue, aenqueue_many, delay, enqueue, enqueue_many, handle_asynchronously, job
    from djctl.schedules import schedule, unschedule
    from djctl.worker.worker import Worker

# The public API is imported on first use, not with the package: `djctl ps`, `scale` and
# the other commands that need no database import djctl's submodules without paying for
# SQLAlchemy and the drivers (issue 20). `import djctl; djctl.enqueue(...)` is unchanged.
_WHERE = {
    "configure": "djctl.api", "engine": "djctl.api", "now": "djctl.api",
    "Settings": "djctl.config",
    "aenqueue": "djctl.enqueue", "aenqueue_many": "djctl.enqueue", "delay": "djctl.enqueue",
    "enqueue": "djctl.enqueue", "enqueue_many": "djctl.enqueue", "handle_asynchronously": "djctl.enqueue",
    "job": "djctl.enqueue",
    "schedule": "djctl.schedules", "unschedule": "djctl.schedules",
    "Worker": "djctl.worker.worker",
}

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
    "schedule",
    "unschedule",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'djctl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # Importing the submodule djctl.enqueue binds it on the package, after the module
        # ran; the public name djctl.enqueue is the function, as when __init__ imported it.
        if name == "enqueue" and isinstance(value, types.ModuleType):
            value = value.enqueue
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
