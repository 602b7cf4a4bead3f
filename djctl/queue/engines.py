"""Engines per dialect: URL normalisation, SQLite pragmas and immediate transactions, pools.

An engine creates its SQLite file on its first connection, and never again: a file
deleted (or replaced) under a running djctl must not be silently recreated empty, for
its jobs would never run. Each pooled connection remembers which file it opened (device
and inode) and is not used once the path names another file or none. Before a process's
first use, :func:`refuse_lost_file` refuses to create a file that running workers lost.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import urllib.parse
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, NoSuchModuleError

from djctl import clock, dburl
from djctl.config import ConfigError
from djctl.dburl import DatabaseFileError as DatabaseFileError  # callers name it store.DatabaseFileError


def normalize_url(url: str) -> URL:
    """Parse ``url``, choosing djctl's drivers (psycopg 3, PyMySQL) where none is named."""
    drivername = dburl.parse(url).drivername  # the one check every command makes, same line
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database URL {url!r} is not a URL (e.g. postgresql://user@host/db)") from None
    return parsed.set(drivername=drivername)


def describe(url: URL) -> str:
    """The URL without its password, for messages."""
    return url.render_as_string(hide_password=True)


def url_key(url: URL) -> str:
    """A short stable name for a database, for per-database runtime files."""
    if url.get_backend_name() == "sqlite":
        assert url.database is not None  # normalize_url refuses a SQLite URL without a file
        ident = str(Path(url.database).resolve())
    else:
        ident = url.set(password=None).render_as_string()
    return hashlib.sha1(ident.encode()).hexdigest()[:12]


def sqlite_path(url: URL) -> Path | None:
    """The absolute path of a SQLite database; None for the other databases."""
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(os.path.abspath(url.database))


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path`` now; None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def refuse_lost_file(url: URL, live_workers: list[int]) -> None:
    """Raise :class:`DatabaseFileError` if the SQLite file of ``url`` is missing while
    ``live_workers`` (pids of workers of that path on this host) run: the file was deleted
    or moved under them, and an empty new one would take jobs no worker runs. Otherwise
    the engine's first connection creates a missing file."""
    path = sqlite_path(url)
    if path is None or path.exists() or not live_workers:
        return
    raise DatabaseFileError(
        f"SQLite database {path} does not exist, but workers of that path are running "
        f"(pids {', '.join(map(str, live_workers))}) on a file deleted or moved under them: "
        "put the file back, or restart them (`djctl restart`); they create it anew"
    )


def _open_sqlite(path: Path):
    """The engine's connect function: its first connection may create the file; once it
    has opened one, it never creates another (that one was deleted or moved)."""
    opened = False

    def connect() -> sqlite3.Connection:
        nonlocal opened
        if opened and not path.exists():
            # Said here, for sqlite3's own "unable to open database file" names nothing.
            raise sqlite3.OperationalError(
                f"SQLite database {path} no longer exists (deleted or moved while djctl had it open): "
                "restore it, or run `djctl db upgrade` to create an empty one")
        uri = f"file:{urllib.parse.quote(str(path))}?mode={'rw' if opened else 'rwc'}"
        conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        opened = True
        return conn

    return connect


def _sqlite_events(engine: Engine, path: Path | None) -> None:
    if path is not None:
        @event.listens_for(engine, "checkout")
        def on_checkout(_dbapi_conn, record, _proxy) -> None:
            if record.info.get("djctl_file") != file_identity(path):
                # The pool reconnects: to the file now at the path, or fails saying it is gone.
                raise DisconnectionError(f"SQLite database {path} was deleted or replaced")

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn, record) -> None:
        if path is not None:
            record.info["djctl_file"] = file_identity(path)
        # The driver's own transaction handling is replaced by explicit BEGINs below.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn) -> None:
        # Writers take the write lock up front: a deferred transaction that later
        # needs it fails with "database is locked" instead of waiting its turn.
        if conn.get_execution_options().get("sqlite_read"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str | URL, pool_size: int = 5) -> Engine:
    """A new engine for ``url`` with djctl's settings for its dialect."""
    parsed = normalize_url(url) if isinstance(url, str) else url
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(parsed)
        if path is None:
            engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
        else:
            engine = create_engine(parsed, creator=_open_sqlite(path))
        _sqlite_events(engine, path)
        return engine
    kwargs: dict = {"pool_size": pool_size, "max_overflow": 10}
    if backend in ("mysql", "mariadb"):
        # READ COMMITTED keeps SKIP LOCKED claims from taking gap locks on each other.
        kwargs["isolation_level"] = "READ COMMITTED"
        kwargs["connect_args"] = {"connect_timeout": 10}
    else:
        kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        engine = create_engine(parsed, **kwargs)
    except (ModuleNotFoundError, NoSuchModuleError):
        driver = parsed.drivername.partition("+")[2]
        raise ConfigError(f"database URL {describe(parsed)}: its driver {driver!r} is not installed; "
                          f"drop '+{driver}' to use djctl's own (psycopg 3, PyMySQL), or install it") from None
    event.listen(engine, "connect", lambda dbapi_conn, _record: clock.sync_dbapi(dbapi_conn, backend))
    _ping_when_idle(engine)
    return engine


# A pooled connection idle this long is pinged before use (a server restart, a failover
# or an idle timeout may have closed it meanwhile); one used more recently is trusted.
# Pinging every checkout, as pool_pre_ping does, doubled the round trips of an enqueue.
PING_IF_IDLE = 1.0


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def on_checkin(_dbapi_conn, record) -> None:
        if record is not None:
            record.info["djctl_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_conn, record, _proxy) -> None:
        since = record.info.get("djctl_idle_since")
        if since is None or time.monotonic() - since < PING_IF_IDLE:
            return  # just connected, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as e:  # noqa: BLE001 - any failure: the pool reconnects
            raise DisconnectionError(f"pooled connection lost while idle: {e}") from None


_engines: dict[tuple[int, str], Engine] = {}
_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    """The process-wide engine for ``url``; a forked child gets its own, never its parent's sockets."""
    key = (os.getpid(), url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = make_engine(url)
        return engine


def dispose_inherited() -> None:
    """In a freshly forked child: drop the parent's engines without closing the parent's connections."""
    with _lock:
        for (pid, _url), engine in list(_engines.items()):
            if pid != os.getpid():
                engine.dispose(close=False)
                del _engines[(pid, _url)]
