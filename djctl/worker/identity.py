"""A worker's name in ``locked_by`` — ``host:<hostname> pid:<pid>``, as delayed_job writes it —
whether the process behind such a name is still alive, and whether it is provably ours.

Host names are not unique (cloned machines, containers sharing the host's network), and
a pid means something only in one PID namespace of one boot. So a worker leaves a mark,
beside its journal, naming where it runs (:func:`node`); a claim of a dead pid is ours to
release at once only when the mark of that pid names our node. Any other claim is judged
by its lease alone.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

_PREFIX = "host:"
_PID = " pid:"


_INIT_PID_NAMESPACE = 0xEFFFFFFC  # PROC_PID_INIT_INO: the kernel's first PID namespace


def pid_namespace() -> int | None:
    """The PID namespace this process runs in, when it is not the kernel's first (a
    container, ``unshare --pid``); None in the first one or where it cannot be read."""
    try:
        inode = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return None if inode == _INIT_PID_NAMESPACE else inode


def hostname() -> str:
    """This host's name in ``locked_by``: ``DJ_HOSTNAME`` when set (supervisors and their
    workers agree on it), else the system's host name — followed by ``@ns<inode>`` inside a
    PID namespace of its own. Containers that share a host name (or ``DJ_HOSTNAME``) number
    their processes from 1 alike: without it, two workers would sign their claims with one
    name, and each would renew, complete, release and recover the other's."""
    name = os.environ.get("DJ_HOSTNAME") or socket.gethostname()
    namespace = pid_namespace()
    return name if namespace is None else f"{name}@ns{namespace}"


def format(host: str, pid: int) -> str:  # noqa: A001 - identity.format reads as meant
    """The ``locked_by`` of the worker ``pid`` on ``host``."""
    return f"{_PREFIX}{host}{_PID}{pid}"


def parse(name: str) -> tuple[str, int] | None:
    """(host, pid) of a worker's ``locked_by``; None when it is not a worker's name."""
    if not name.startswith(_PREFIX):
        return None
    host, sep, pid = name[len(_PREFIX):].rpartition(_PID)
    if not sep or not pid.isdigit():
        return None
    return host, int(pid)


def like(host: str) -> str:
    """A SQL LIKE pattern for the names of the workers on ``host``. Unescaped (SQLite has no
    default LIKE escape): it may match more, so check each name with :func:`parse`."""
    return f"{_PREFIX}{host}{_PID}%"


def node() -> str:
    """Where this process's pids mean something: the boot and the PID namespace."""
    try:
        boot = open("/proc/sys/kernel/random/boot_id").read().strip()  # noqa: SIM115 - read once
    except OSError:
        boot = "?"
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{boot}/{namespace}"


def mark(file: Path) -> None:
    """Leave this worker's node in ``file`` (see :func:`ours`)."""
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(node())
    except OSError:
        pass  # without a mark the worker is judged by its lease alone: slower, still safe


def ours(file: Path) -> bool:
    """Whether the worker that left ``file`` (see :func:`mark`) ran in our boot and PID
    namespace, so that its pid can be looked up in our process table."""
    try:
        return file.read_text() == node()
    except OSError:
        return False


def pid_alive(pid: int | None, started: datetime | None = None) -> bool:
    """Whether ``pid`` runs on this host (a zombie counts as dead) — and, given its naive-UTC
    start time, is still the same process rather than a newer one that reused the number.
    A process we may not inspect counts as alive: its claims are not ours to take."""
    if pid is None or pid <= 0:
        return False
    import psutil  # here, not at the top: `djctl scale`, `logs` and `--help` never need it

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False  # dead, waiting for its parent to reap it
        created = process.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.Error:
        return True
    if started is None:
        return True
    born = datetime.fromtimestamp(created, timezone.utc).replace(tzinfo=None)
    return born <= started + timedelta(seconds=2)
