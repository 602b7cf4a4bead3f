"""Recurring jobs: ``schedule``, ``unschedule`` and ``schedules``.

A schedule is one ``delayed_jobs`` row with a ``schedule_key`` and a recurrence
(see recurrence.py). Workers claim it like any job, so each period runs once however
many workers and hosts there are; after each run, well or not, the worker moves its
``run_at`` to the next period instead of deleting or failing it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Unpack

from sqlalchemy import Connection, and_, case, delete, func, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.elements import KeyedColumnElement

from djctl import api, config, payload
from djctl.enqueue import Options
from djctl.handlers import display_name, encode_call, encode_job
from djctl.limits import LimitOptions, Limits
from djctl.queue import admin, gates
from djctl.queue.inserts import LIMIT_COLUMNS
from djctl.queue.schema import delayed_jobs
from djctl.recurrence import Recurrence, format_every

_c = delayed_jobs.c


@dataclass(frozen=True)
class ScheduleInfo:
    """One schedule as ``schedules()`` reports it; datetimes are aware UTC."""

    key: str
    id: int
    job: str
    """The job's display name: ``NewsletterJob``, ``cleanup``, ``Photo#upload``."""
    every: timedelta | None
    cron: str | None
    tz: str | None
    """The cron expression's time zone; None for ``every`` schedules."""
    queue: str | None
    priority: int
    next_run: datetime
    """When the coming run is due; while ``running``, the due time of the run in progress."""
    running: bool
    last_run_at: datetime | None
    last_error: str | None
    valid: bool = True
    """False if the row's recurrence was edited by hand into something unreadable."""

    def describe(self) -> str:
        """``every 3h`` or ``cron 0 3 * * * Europe/Berlin``."""
        if self.every is not None:
            return f"every {format_every(self.every)}"
        return f"cron {self.cron} {self.tz}" if self.valid else f"invalid: {self.cron}"


def schedule(
    job: Any,
    *,
    every: timedelta | None = None,
    cron: str | None = None,
    tz: str = "UTC",
    key: str | None = None,
    queue: str | None = None,
    priority: int = 0,
    now: datetime | None = None,
    **limits: Unpack[LimitOptions],
) -> str:
    """Run ``job`` every ``every``, or at the times of ``cron`` (wall-clock time in ``tz``); returns its key.

    ``job`` is an object with ``perform()``, a module-level function, or a bound method.
    The key defaults to a stable name for the job (a function's ``module:qualname``; an
    object's class and a hash of its state), so calling ``schedule`` again, on every
    start-up, updates the schedule instead of adding another: its handler, queue,
    priority and recurrence are replaced. A new schedule, or one whose recurrence changed,
    runs at once (``every``) or at the next cron time; otherwise the next run is kept.
    Jobs whose state differs from one start-up to the next need an explicit ``key``.

    ValueError: both or neither of every/cron, a non-positive or fractional ``every``,
    an invalid cron expression, an unknown time zone. TypeError: a job that cannot be
    stored. ``now`` (aware, or naive UTC) replaces the current time, for tests.

    ``concurrency_key``/``concurrency_limit`` and ``throttle`` limit its runs as
    :func:`djctl.enqueue`'s do (a schedule is unique by its key already: no ``unique_key``).
    """
    if limits.get("unique_key") is not None or limits.get("unique_while") is not None:
        raise ValueError("a schedule is unique by its key already: give key=, not unique_key")
    recurrence = Recurrence.of(every, cron, tz)
    data, default_key = _encode(job)
    key = default_key if key is None else key
    if not isinstance(key, str) or not key.strip() or len(key) > 255:
        raise ValueError(f"key must be a non-empty string of at most 255 characters; got {key!r}")
    queue = queue if queue is not None else getattr(job, "queue_name", None)
    opts = Options(priority, None, queue, Limits.of(job, **limits)).validated()
    at = api.utc_naive(now) if now is not None else api.utc_naive(api.now())
    row = {
        "schedule_key": key,
        "handler": payload.dumps(data),
        "priority": opts.priority,
        "queue": opts.queue or config.current().default_queue,
        **recurrence.columns(),
        "run_at": recurrence.first_run(at),
        "attempts": 0,
        "created_at": at,
        "updated_at": at,
        **opts.limits.columns(),
        "unique_key": None,  # an attribute of the job's class cannot make a schedule unique twice
        "unique_while": None,
    }
    for attempt in range(3):
        try:
            with api.engine().begin() as conn:
                gates.ensure(conn, conn.dialect.name, gates.gate_names([row]))
                conn.execute(_upsert(conn, row))
            break
        except DBAPIError as e:
            # InnoDB may pick concurrent upserts of one key (processes starting together) as deadlock victims.
            if attempt == 2 or _mysql_code(e) != _MYSQL_DEADLOCK:
                raise
    _ring()
    return key


_MYSQL_DEADLOCK = 1213


def _mysql_code(e: DBAPIError) -> int | None:
    args = getattr(e.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def unschedule(key: str) -> bool:
    """Delete the schedule ``key``; False if there is none. A run in progress finishes, and is the last."""
    with api.engine().begin() as conn:
        return conn.execute(delete(delayed_jobs).where(_c.schedule_key == key)).rowcount > 0


def schedules(conn: Connection | None = None) -> list[ScheduleInfo]:
    """Every schedule in the database, by key."""
    query = (
        select(_c.schedule_key, _c.id, _c.handler, _c.reoccur_in, _c.cron, _c.queue, _c.priority, _c.run_at,
               _c.locked_at, _c.last_run_at, _c.last_error)
        .where(_c.schedule_key.is_not(None))
    )
    if conn is None:
        with api.engine().connect().execution_options(sqlite_read=True) as own:
            rows = own.execute(query).all()
    else:
        rows = conn.execute(query).all()
    # Sorted here: MySQL's default collation would order keys without regard to case.
    return sorted((_info(*row) for row in rows), key=lambda s: s.key)


def _info(key, id_, handler, reoccur_in, cron, queue, priority, run_at, locked_at, last_run_at, last_error):
    try:
        name = display_name(payload.loads(handler))
    except payload.HandlerError:
        name = "?"
    try:
        rec = Recurrence.from_row(reoccur_in, cron)
        every, expr, tz, valid = rec.every, rec.cron, (rec.tz if rec.cron is not None else None), True
    except ValueError:
        every, expr, tz, valid = None, cron if cron is not None else f"reoccur_in={reoccur_in}", None, False
    return ScheduleInfo(
        key=key, id=int(id_), job=name, every=every, cron=expr, tz=tz, queue=queue, priority=int(priority),
        next_run=_aware(run_at), running=locked_at is not None, last_run_at=_aware(last_run_at),
        last_error=last_error, valid=valid,
    )


def _aware(when: datetime | None) -> datetime | None:
    return None if when is None else when.replace(tzinfo=timezone.utc)


def _encode(job: Any) -> tuple[dict, str]:
    """The handler data for ``job`` and its default key."""
    if isinstance(job, type):
        raise TypeError(f"schedule a {job.__name__} instance (or a function), not the class itself")
    if callable(getattr(job, "perform", None)) and not inspect.isroutine(job):
        data = encode_job(job)
        return data, f"{type(job).__qualname__}:{_digest(data)}"
    if inspect.ismethod(job) and not isinstance(job.__self__, type):
        data = encode_call(None, job.__self__, (), {}, method=job.__name__)
        return data, f"{type(job.__self__).__qualname__}.{job.__name__}:{_digest(data)}"
    if callable(job):
        data = encode_call(job, None, (), {})
        return data, data["call"]
    raise TypeError(f"schedule takes a job object with perform() or a function; got {type(job).__name__}")


def _digest(data: dict) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _upsert(conn: Connection, row: dict):
    """INSERT the schedule, or UPDATE the row with its key: one statement, so concurrent start-ups agree."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(delayed_jobs).values(row)
        return pg.on_conflict_do_update(index_elements=[_c.schedule_key], index_where=_c.schedule_key.is_not(None),
                                        set_=dict(_upsert_changes(pg.excluded)))
    if dialect == "sqlite":
        lite = sqlite.insert(delayed_jobs).values(row)
        return lite.on_conflict_do_update(index_elements=[_c.schedule_key], index_where=_c.schedule_key.is_not(None),
                                          set_=dict(_upsert_changes(lite.excluded)))
    my = mysql.insert(delayed_jobs).values(row)
    return my.on_duplicate_key_update(_upsert_changes(my.inserted))


def _upsert_changes(new: ReadOnlyColumnCollection[str, KeyedColumnElement[Any]]) -> list[tuple[str, Any]]:
    """The columns an upsert sets, from ``new``: the row that was to be inserted."""
    same = and_(
        func.coalesce(_c.reoccur_in, -1) == func.coalesce(new.reoccur_in, -1),
        func.coalesce(_c.cron, "") == func.coalesce(new.cron, ""),
    )
    # Order matters on MySQL, which evaluates each assignment with the columns already
    # assigned before it: run_at compares the old recurrence, so it goes first.
    changes: list[tuple[str, Any]] = [
        ("run_at", case((same, _c.run_at), else_=new.run_at)),
        ("handler", new.handler),
        ("priority", new.priority),
        ("queue", new.queue),
        ("reoccur_in", new.reoccur_in),
        ("cron", new.cron),
        ("failed_at", None),
        ("updated_at", new.updated_at),
        *((name, getattr(new, name)) for name in LIMIT_COLUMNS),
    ]
    return changes


def _ring() -> None:
    admin.wake(config.current().database_url)

