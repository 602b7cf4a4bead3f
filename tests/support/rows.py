"""Reading the tables as a user would see them, and the naive UTC "now" rows are written in."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from djctl import api
from djctl.queue.schema import delayed_jobs


def utcnow() -> dt.datetime:
    """Now in UTC, naive: how ``delayed_jobs`` stores its times."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def count(url: str, where: str = "1=1", **params: Any) -> int:
    """How many ``delayed_jobs`` rows match ``where``."""
    with api.engine(url).connect().execution_options(sqlite_read=True) as conn:
        return conn.execute(text(f"SELECT COUNT(*) FROM delayed_jobs WHERE {where}"), params).scalar_one()


def row(engine: Engine, job_id: int) -> dict | None:
    """Every column of one job, or None once it is gone."""
    with engine.connect().execution_options(sqlite_read=True) as conn:
        found = conn.execute(select(delayed_jobs).where(delayed_jobs.c.id == job_id)).first()
    return dict(found._mapping) if found else None


def job_row(url: str, job_id: int) -> dict | None:
    """What the supervisor tests look at in one job: attempts, lock, last error, failed_at."""
    with api.engine(url).connect().execution_options(sqlite_read=True) as conn:
        found = conn.execute(text("SELECT attempts, locked_by, last_error, failed_at FROM delayed_jobs "
                                  "WHERE id = :id"), {"id": job_id}).mappings().first()
    return dict(found) if found else None


def locked(url: str) -> list[tuple[int, str]]:
    """(id, locked_by) of every claimed job, by id."""
    with api.engine(url).connect().execution_options(sqlite_read=True) as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT id, locked_by FROM delayed_jobs WHERE locked_by IS NOT NULL ORDER BY id"))]


def registered(url: str) -> list[dict]:
    """The processes supervisors have registered (host, name, pid)."""
    with api.engine(url).connect().execution_options(sqlite_read=True) as conn:
        return [dict(r) for r in conn.execute(text("SELECT host, name, pid FROM djctl_processes")).mappings()]


def only_row():
    """The one row of ``delayed_jobs`` (fails unless there is exactly one)."""
    with api.engine().connect() as conn:
        return conn.execute(select(delayed_jobs)).one()
