"""What a worker started and finished but had not yet recorded: a file that outlives a SIGKILL.

The executor appends ``s<id>`` as it starts a job and ``<id>`` when the job succeeded,
before reporting either. A worker records outcomes in batches, so when it is killed
some finished jobs are still claimed in the database; whoever releases the dead
worker's claims on this host reads its journal, deletes the finished jobs instead of
running them again, and gives back the attempt of those it never started. The file needs no fsync: a
killed process's writes stay in the page cache; only a crash of the machine loses
them, and then the jobs just run again (at-least-once).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import URL

from djctl.queue import doorbell
from djctl.queue import engines as store
from djctl.worker import identity


def path(url: URL, pid: int) -> Path:
    """The journal of the worker ``pid`` on the database ``url``."""
    directory = doorbell.bell_dir(store.url_key(url)) / "journal"
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        pass  # no journal (the runtime directory is unusable): jobs may just run again
    namespace = identity.pid_namespace()
    # A pid means something in one PID namespace only: two namespaces may share this directory.
    return directory / (str(pid) if namespace is None else f"{pid}@ns{namespace}")


class Journal:
    """The executor's end: append-only, one id per line."""

    def __init__(self, file: Path):
        try:
            self.fd: int | None = os.open(file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError:
            self.fd = None  # best effort, as the journal's whole point is

    def started(self, job_id: int) -> None:
        if self.fd is not None:
            os.write(self.fd, f"s{job_id}\n".encode())

    def finished(self, job_id: int) -> None:
        if self.fd is not None:
            os.write(self.fd, f"{job_id}\n".encode())


def read(file: Path) -> tuple[set[int], list[int]] | None:
    """(started, finished) ids; None when there is no journal (nothing is known)."""
    try:
        text = file.read_text()
    except OSError:
        return None
    started, finished = set(), []
    for line in text.splitlines():  # a torn last line is ignored
        if line.isdigit():
            finished.append(int(line))
        elif line[:1] == "s" and line[1:].isdigit():
            started.add(int(line[1:]))
    return started, finished


def reset(file: Path) -> None:
    """An empty journal: from now on, what is not in it was not started."""
    try:
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    except OSError:
        pass


def mark_of(file: Path) -> Path:
    """Where the worker of the journal ``file`` marks its node (see identity.mark)."""
    return file.with_name(file.name + ".node")


def discard(file: Path) -> None:
    for f in (file, mark_of(file)):
        try:
            f.unlink()
        except OSError:
            pass
