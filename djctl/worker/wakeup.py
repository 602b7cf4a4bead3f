"""How an idle worker learns at once that a job was enqueued: LISTEN/NOTIFY or the local doorbell."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.engine import URL

from djctl.queue import doorbell
from djctl.queue import engines as store


class Waker(Protocol):
    def fileno(self) -> int: ...
    def drain(self) -> None: ...
    def close(self) -> None: ...


class PgListener:
    """A dedicated autocommit connection LISTENing on the channel the delayed_jobs trigger notifies."""

    def __init__(self, url: URL):
        import psycopg

        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
        self.conn.execute("LISTEN djctl_jobs")

    def fileno(self) -> int:
        return self.conn.fileno()

    def drain(self) -> None:
        for _ in self.conn.notifies(timeout=0):
            pass

    def close(self) -> None:
        self.conn.close()


def open_waker(url: URL) -> Waker:
    """The wake-up source for ``url``; raises if the database cannot be reached."""
    if url.get_backend_name() == "postgresql":
        return PgListener(url)
    return doorbell.Doorbell(doorbell.bell_dir(store.url_key(url)))
