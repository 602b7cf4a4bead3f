"""Wake-ups for idle workers on this host: one datagram socket per worker in a private directory.

PostgreSQL has LISTEN/NOTIFY for this; SQLite and MySQL do not, so an enqueue rings
every worker of the same database on this host. Polling every ``sleep_delay`` stays
the safety net (and covers other hosts).
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Connection


def bell_dir(key: str) -> Path:
    """The owner-only directory holding the bells for the database ``key``."""
    path = _bells_dir(key)
    base = path.parent.parent
    try:
        Path(base).mkdir(mode=0o700, parents=True, exist_ok=True)
        # Level by level: mkdir(parents=True) would give djctl-bells the umask's mode.
        for directory in (path.parent, path):
            directory.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        pass  # never fatal (an enqueue has committed by now): ring() and Doorbell() cope
    return path


class Doorbell:
    """The receiving end: a worker's own socket, readable when someone rang."""

    def __init__(self, directory: Path):
        self.path = directory / f"{os.getpid()}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        old = os.umask(0o177)
        try:
            self.sock.bind(str(self.path))
        finally:
            os.umask(old)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> None:
        try:
            while self.sock.recv(64):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        self.sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def listeners(key: str) -> list[int]:
    """The pids of the other live processes with a bell for the database ``key`` on this
    host: its running workers (each rings while it lives; a dead one's bell is stale)."""
    try:
        names = os.listdir(_bells_dir(key))
    except OSError:
        return []
    pids = []
    for name in names:
        stem = name.removesuffix(".sock")
        if stem == name or not stem.isdigit() or int(stem) == os.getpid():
            continue
        try:
            os.kill(int(stem), 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        pids.append(int(stem))
    return sorted(pids)


def _bells_dir(key: str) -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(tempfile.gettempdir(), f"djctl-{os.getuid()}")
    return Path(base) / "djctl-bells" / key


@functools.lru_cache(maxsize=8)
def _bells_for(database_url: str) -> Path | None:
    from djctl.queue import engines as store

    url = store.normalize_url(database_url)
    if url.get_backend_name() == "postgresql":
        return None  # LISTEN/NOTIFY: the delayed_jobs trigger rings for us
    return bell_dir(store.url_key(url))


def notify(conn: Connection) -> None:
    """Inside a transaction that makes jobs claimable without touching ``run_at`` (claims
    given back or released), have PostgreSQL wake its listeners at the commit — its
    trigger fires only for new rows and new ``run_at``s. Elsewhere :func:`ring_for` after
    the commit does it."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_notify('djctl_jobs', '')")


def ring_for(database_url: str) -> None:
    """Wake the idle workers of ``database_url`` on this host, after a commit that made work."""
    directory = _bells_for(database_url)
    if directory is not None:
        ring(directory)


def ring(directory: Path) -> None:
    """Wake every worker listening in ``directory``; best effort, never raises."""
    try:
        names = [name for name in os.listdir(directory) if name.endswith(".sock")]
    except OSError:
        return
    if not names:
        return  # no worker of this database on this host: no socket to open
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for name in names:
            path = os.path.join(directory, name)
            try:
                sock.sendto(b"!", path)
            except OSError as e:
                if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
                    # A worker that died without closing its bell.
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
