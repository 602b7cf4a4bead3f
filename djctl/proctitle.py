"""Process titles: what ``ps``, ``top`` and htop show for djctl's processes.

A worker reads ``djctl worker.1`` and its executor child ``djctl worker.1 job 23
photos.jobs:Resize`` while it runs job 23, so an operator can tell which process runs
which job, and which one to look at when a job spins.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import setproctitle

from djctl.payload import name_of


def process_name() -> str:
    """``djctl worker.1`` under the supervisor (which sets ``PS``), ``djctl worker`` otherwise."""
    return f"djctl {os.environ.get('PS') or 'worker'}"


def set_title(title: str) -> None:
    """Show ``title`` as this process's command line in the process table."""
    setproctitle.setproctitle(title)


def executor_title() -> str:
    """An executor waiting for its next job: ``djctl worker.1 executor``."""
    return f"{process_name()} executor"


def job_title(job_id: int, target: Any, fallback: str) -> str:
    """An executor running a job: ``djctl worker.1 job 23 photos.jobs:Resize`` (the job's
    class, or the function a delayed call runs; ``fallback`` when it has no importable name)."""
    try:
        what = name_of(target if inspect.isroutine(target) else type(target))
    except TypeError:
        what = fallback
    return f"{process_name()} job {job_id} {what}"
