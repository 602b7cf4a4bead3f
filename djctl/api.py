"""Process-wide state: the settings in force, the engine, and the schema check."""

from __future__ import annotations

import os
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session

from djctl import clock, config, payload
from djctl.clock import utc_naive  # noqa: F401 - re-exported: api.utc_naive
from djctl.errors import one_line
from djctl.queue import doorbell, migrations
from djctl.queue import engines as store

_ready: set[tuple[int, str]] = set()
_lock = threading.Lock()
_orm_sessions: dict[int, Session] = {}


def now() -> datetime:
    """The current time, timezone-aware UTC, by the configured database's clock: so
    ``run_at=djctl.now() + timedelta(minutes=5)`` means five minutes from now for the
    workers too, whatever this host's clock says. The local clock while the database
    cannot be reached."""
    try:
        engine()  # its first connection reads the database's clock
    except Exception:  # noqa: BLE001 - a time is still better than an error here
        pass
    return clock.now()


def configure(database_url: str | None = None, app: str | list[str] | None = None, **settings: Any) -> config.Settings:
    """Set djctl's settings for this process; anything not given keeps its configured value.

    Accepts every field of :class:`djctl.config.Settings` as a keyword.
    """
    flags = dict(settings, database_url=database_url, app=app)
    base = config.load_settings()
    merged = base.replace(**{k: config._coerce(k, v, k) if k != "database_url" else v
                             for k, v in flags.items() if v is not None})
    store.normalize_url(merged.database_url)
    config.validate(merged)
    config.set_current(merged)
    return merged


def engine(database_url: str | None = None) -> Engine:
    """The engine for the configured database, its schema brought up to date on first use."""
    url = database_url or config.current().database_url
    eng = store.engine_for(url)
    key = (os.getpid(), url)
    if key not in _ready:
        with _lock:
            if key not in _ready:
                parsed = store.normalize_url(url)
                if parsed.get_backend_name() == "sqlite":
                    store.refuse_lost_file(parsed, doorbell.listeners(store.url_key(parsed)))
                if migrations.current_version(eng) < migrations.LATEST:
                    migrations.upgrade(eng)
                _ready.add(key)
    return eng


def orm_session() -> Session:
    """The session jobs load database objects with (one per process, expired after each job)."""
    session = _orm_sessions.get(os.getpid())
    if session is None:
        # Reads never take SQLite's write lock, and objects stay usable after the
        # load's transaction ends (see load_orm).
        session = _orm_sessions[os.getpid()] = Session(
            engine().execution_options(sqlite_read=True), expire_on_commit=False
        )
    return session


def end_orm_session() -> None:
    """Forget what the last job loaded, so the next one reads fresh rows."""
    session = _orm_sessions.get(os.getpid())
    if session is not None:
        session.rollback()
        session.expunge_all()


def load_orm(cls: type, pk: tuple) -> Any:
    """The mapped object of ``cls`` with primary key ``pk``, read fresh for a job; RecordNotFound if gone."""
    session = orm_session()
    try:
        obj = session.get(cls, pk if len(pk) > 1 else pk[0])
    except (InvalidRequestError, IndexError) as e:  # not a mapped class, or not its key
        session.rollback()
        raise payload.HandlerError(f"handler holds a database object that cannot be loaded: {one_line(e)}") from None
    # End the read now: a job may run for hours, and an open transaction would hold back
    # PostgreSQL's vacuum, or on SQLite turn the job's own later write into a conflict.
    session.commit()
    if obj is None:
        raise payload.RecordNotFound(f"{cls.__name__} with primary key {', '.join(map(str, pk))} no longer exists")
    return obj
