"""Putting work on the queue: enqueue, enqueue_many, aenqueue, aenqueue_many, delay, handle_asynchronously."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, event, insert, text
from sqlalchemy.orm import Session

from djctl import api, config, payload
from djctl.handlers import encode_call, encode_job
from djctl.queue import direct, doorbell, migrations
from djctl.queue.engines import describe
from djctl.queue.schema import Timestamp, delayed_jobs

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


PRIORITY_MIN = -(2**31)
PRIORITY_MAX = 2**31 - 1
"""The priorities every database stores (a 32-bit INTEGER column)."""


@dataclass(frozen=True)
class Options:
    """Where and when a job runs."""

    priority: int = 0
    run_at: datetime | None = None
    queue: str | None = None

    def validated(self) -> Options:
        """These options, if every database can store them: TypeError for a wrong type,
        ValueError for a value out of range, each naming the option and its limit."""
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise TypeError(f"priority must be an integer, got {self.priority!r}")
        if not PRIORITY_MIN <= self.priority <= PRIORITY_MAX:
            # SQLite would store it; PostgreSQL and MariaDB refuse it with a driver error.
            raise ValueError(f"priority must be a 32-bit integer ({PRIORITY_MIN} to {PRIORITY_MAX}), "
                             f"got {self.priority}")
        if self.run_at is not None and not isinstance(self.run_at, datetime):
            raise TypeError(f"run_at must be a datetime, got {self.run_at!r}")
        if self.run_at is not None:
            try:
                api.utc_naive(self.run_at)
            except OverflowError:
                raise ValueError(f"run_at {self.run_at.isoformat()} is out of range: in UTC it falls "
                                 "outside years 1 to 9999") from None
        if self.queue is not None and (not isinstance(self.queue, str) or not self.queue or len(self.queue) > 255):
            raise TypeError(f"queue must be a non-empty string of at most 255 characters, got {self.queue!r}")
        if self.queue is not None and "\x00" in self.queue:
            # SQLite and MariaDB would store it, PostgreSQL refuses it: refused everywhere.
            raise ValueError(f"queue must not contain a NUL character, got {self.queue!r}")
        return self


def _row(data: dict, opts: Options, now: datetime) -> dict:
    return {
        "handler": payload.dumps(data),
        "priority": opts.priority,
        "queue": opts.queue or config.current().default_queue,
        "run_at": api.utc_naive(opts.run_at) if opts.run_at is not None else now,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


def _ring() -> None:
    doorbell.ring_for(config.current().database_url)


_PG_BULK = text(
    "INSERT INTO delayed_jobs (handler, priority, queue, run_at, attempts, created_at, updated_at) "
    "SELECT x.handler, x.priority, x.queue, x.run_at, 0, :now, :now "
    "FROM json_to_recordset(CAST(:rows AS json)) AS x(handler text, priority integer, queue text, run_at timestamp) "
    "RETURNING id"
).bindparams(bindparam("now", type_=Timestamp))


_packet_limits: dict[tuple[int, str], int] = {}


def _check_packet(execute: Any, rows: list[dict]) -> None:
    """Refuse, naming both sizes, a job MySQL/MariaDB would drop the connection over.

    The server closes the connection ("server has gone away") on a statement larger
    than its ``max_allowed_packet``; read once per process and database.
    """
    # A Session, or anything that stands for one (Flask-SQLAlchemy's scoped_session), has
    # get_bind(); a Connection has its engine.
    engine = execute.get_bind().engine if hasattr(execute, "get_bind") else execute.engine
    key = (os.getpid(), engine.url.render_as_string(hide_password=False))
    limit = _packet_limits.get(key)
    if limit is None:
        limit = _packet_limits[key] = int(execute.scalar(text("SELECT @@max_allowed_packet")))
    for r in rows:
        h = r["handler"]
        # The driver escapes these characters with a backslash each; the rest of the
        # statement fits in the margin.
        size = len(h) + sum(h.count(c) for c in "\\'\"\n\r\x00\x1a") + _STATEMENT_MARGIN
        if size > limit:
            raise ValueError(
                f"job is {_mib(len(h))} encoded, over this database's max_allowed_packet of {_mib(limit)}: "
                "pass a reference to the data (a path, a row id) instead, or raise max_allowed_packet on the server"
            )


_STATEMENT_MARGIN = 4096


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _insert_rows(execute: Any, rows: list[dict], dialect: str) -> list[int]:
    """Insert ``rows`` in one statement; their ids in the order of ``rows``."""
    if dialect in ("mysql", "mariadb"):
        _check_packet(execute, rows)
    stmt = insert(delayed_jobs)
    if len(rows) == 1:
        return [execute.scalar(stmt.returning(delayed_jobs.c.id), rows[0])]
    if dialect == "sqlite":
        # SQLite numbers one statement's rows in VALUES order; asking SQLAlchemy to
        # sort RETURNING would make it insert row by row.
        return sorted(execute.scalars(stmt.returning(delayed_jobs.c.id), rows).all())
    if dialect == "postgresql":
        # One JSON parameter instead of seven a row: the driver need not parse a
        # statement of thousands of placeholders. The sequence numbers the rows in
        # the array's order.
        data = json.dumps([
            {"handler": r["handler"], "priority": r["priority"], "queue": r["queue"], "run_at": r["run_at"].isoformat()}
            for r in rows
        ])
        return sorted(execute.scalars(_PG_BULK, {"rows": data, "now": rows[0]["created_at"]}).all())
    # Elsewhere RETURNING rows may come back in any order unless asked.
    return execute.scalars(stmt.returning(delayed_jobs.c.id, sort_by_parameter_order=True), rows).all()


_schema_current: set[tuple[int, str]] = set()


def _check_schema(session: Session) -> None:
    """Refuse, in one line, a session whose database lacks djctl's tables.

    Outside a session djctl creates its tables on first use; inside one it cannot, for
    the caller's transaction may hold locks the migration would wait for (and DDL
    commits the caller's work on MySQL). The version is read once per process.
    """
    engine = session.get_bind().engine
    key = (os.getpid(), engine.url.render_as_string(hide_password=False))
    if key in _schema_current:
        return
    if migrations.current_version(engine) < migrations.LATEST:
        raise migrations.SchemaNotCurrent(
            f"djctl's tables are missing or out of date in {describe(engine.url)}: "
            "run `djctl db upgrade` against that database first"
        )
    _schema_current.add(key)


def _insert(rows: list[dict], session: Session | None) -> list[int]:
    if session is not None:
        _check_schema(session)
        ids = _insert_rows(session, rows, session.get_bind().dialect.name)
        event.listen(session, "after_commit", lambda _s: _ring(), once=True)
        return ids
    eng = api.engine()
    if len(rows) == 1 and eng.dialect.name in direct.DIALECTS:
        ids = [direct.insert_one(eng, rows[0])]
    elif len(rows) == 1 and eng.dialect.name != "sqlite":
        # One INSERT is atomic on its own: without BEGIN and COMMIT it is one round
        # trip instead of three, which is most of what an enqueue costs.
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            ids = _insert_rows(conn, rows, eng.dialect.name)
    else:
        with eng.begin() as conn:
            ids = _insert_rows(conn, rows, eng.dialect.name)
    _ring()
    return ids


def enqueue(
    job: Any,
    *,
    priority: int = 0,
    run_at: datetime | None = None,
    queue: str | None = None,
    session: Session | None = None,
) -> int:
    """Put ``job`` (an object with ``perform()``) on the queue; returns the job's id.

    With ``session``, the row is inserted in that SQLAlchemy session and commits or
    rolls back with it. Raises TypeError if the job holds anything JSON cannot carry.
    """
    queue = queue if queue is not None else getattr(job, "queue_name", None)
    opts = Options(priority, run_at, queue).validated()
    return _insert([_row(encode_job(job), opts, _now())], session)[0]


def enqueue_many(
    jobs: Iterable[Any],
    *,
    priority: int = 0,
    run_at: datetime | None = None,
    queue: str | None = None,
    session: Session | None = None,
) -> list[int]:
    """Put many jobs on the queue in one round trip; returns their ids in order.

    Every job is encoded before anything is written: one bad job enqueues none.
    """
    now = _now()
    rows = []
    for job in jobs:
        q = queue if queue is not None else getattr(job, "queue_name", None)
        rows.append(_row(encode_job(job), Options(priority, run_at, q).validated(), now))
    return _insert(rows, session) if rows else []


async def aenqueue(
    job: Any,
    *,
    priority: int = 0,
    run_at: datetime | None = None,
    queue: str | None = None,
    session: AsyncSession | None = None,
) -> int:
    """:func:`enqueue` for async code: the same options, and the event loop is never blocked.

    With ``session`` (an ``AsyncSession``), the row is inserted in that session's
    transaction, through its own async driver, and commits or rolls back with it.
    """
    queue = queue if queue is not None else getattr(job, "queue_name", None)
    opts = Options(priority, run_at, queue).validated()
    return (await _ainsert([_row(encode_job(job), opts, _now())], session))[0]


async def aenqueue_many(
    jobs: Iterable[Any],
    *,
    priority: int = 0,
    run_at: datetime | None = None,
    queue: str | None = None,
    session: AsyncSession | None = None,
) -> list[int]:
    """:func:`enqueue_many` for async code: one round trip, ids in order, one bad job enqueues none."""
    now = _now()
    rows = []
    for job in jobs:
        q = queue if queue is not None else getattr(job, "queue_name", None)
        rows.append(_row(encode_job(job), Options(priority, run_at, q).validated(), now))
    return await _ainsert(rows, session) if rows else []


async def _ainsert(rows: list[dict], session: AsyncSession | None) -> list[int]:
    if session is not None:
        return await session.run_sync(lambda sync_session: _insert(rows, sync_session))
    # Without a session, djctl's own engine and driver do the insert on a thread: no
    # second pool, no async driver required, and the same SQL as enqueue.
    return await asyncio.to_thread(_insert, rows, None)


def _now() -> datetime:
    return api.utc_naive(api.now())


def _enqueue_call(data: dict, opts: Options, session: Session | None = None) -> int:
    return _insert([_row(data, opts.validated(), _now())], session)[0]


class _Delayed:
    """What ``delay(obj)`` returns: calling it, or any of its methods, enqueues the call."""

    def __init__(self, target: Any, opts: Options, session: Session | None):
        self._target = target
        self._opts = opts
        self._session = session

    def __call__(self, *args: Any, **kwargs: Any) -> int:
        target = self._target
        if not callable(target) or isinstance(target, type):
            raise TypeError(f"{target!r} is not a function; call one of its methods: delay(obj).method()")
        return _enqueue_call(encode_call(target, None, args, kwargs), self._opts, self._session)

    def __getattr__(self, name: str) -> Callable[..., int]:
        target = self._target
        if name.startswith("_") or not callable(getattr(target, name, None)):
            raise AttributeError(f"{type(target).__name__} has no method {name!r} to delay")

        def enqueue_method(*args: Any, **kwargs: Any) -> int:
            if isinstance(target, (type, types.ModuleType)):
                data = encode_call(getattr(target, name), None, args, kwargs)
            else:
                data = encode_call(None, target, args, kwargs, method=name)
            return _enqueue_call(data, self._opts, self._session)

        return enqueue_method


def delay(
    target: Any,
    *,
    priority: int = 0,
    run_at: datetime | None = None,
    queue: str | None = None,
    session: Session | None = None,
) -> Any:
    """``delay(photo).upload(size=3)`` or ``delay(send_mail)(to)``: the call runs later, on a worker."""
    return _Delayed(target, Options(priority, run_at, queue), session)


def job(obj: Any) -> Any:
    """Mark a job class or function, allowing workers to run code from its module."""
    payload.register_module(obj.__module__)
    return obj


RunAt = datetime | timedelta | Callable[[], datetime] | None


def _resolve_run_at(run_at: RunAt) -> datetime | None:
    if callable(run_at):
        run_at = run_at()
    if isinstance(run_at, timedelta):
        return api.now() + run_at
    return run_at


class _AsyncFunction:
    """A function that enqueues itself when called; ``.now(...)`` runs it at once."""

    __name__: str  # with __doc__, __module__..., copied from the function by update_wrapper

    def __init__(self, fn: Callable, priority: int, run_at: RunAt, queue: str | None):
        functools.update_wrapper(self, fn)
        self.now = fn
        self._opts = (priority, run_at, queue)

    def _options(self) -> Options:
        priority, run_at, queue = self._opts
        return Options(priority, _resolve_run_at(run_at), queue)

    def __call__(self, *args: Any, **kwargs: Any) -> int:
        return _enqueue_call(encode_call(self.now, None, args, kwargs), self._options())

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return _AsyncMethod(self, obj)


class _AsyncMethod:
    def __init__(self, func: _AsyncFunction, obj: Any):
        self._func = func
        self._obj = obj
        self.now = types.MethodType(func.now, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> int:
        data = encode_call(None, self._obj, args, kwargs, method=self._func.__name__)
        return _enqueue_call(data, self._func._options())


def handle_asynchronously(
    fn: Callable | None = None,
    *,
    priority: int = 0,
    run_at: RunAt = None,
    queue: str | None = None,
) -> Any:
    """Make a function or method always run on a worker: calling it enqueues; ``.now()`` runs it here.

    ``run_at`` may be a datetime, a timedelta from now, or a callable returning a datetime.
    """

    def wrap(f: Callable) -> _AsyncFunction:
        if not inspect.isfunction(f):
            raise TypeError("handle_asynchronously decorates functions and methods")
        payload.register_module(f.__module__)
        return _AsyncFunction(f, priority, run_at, queue)

    return wrap(fn) if fn is not None else wrap
