"""Putting work on the queue: enqueue, enqueue_many, aenqueue, aenqueue_many, delay, handle_asynchronously."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Unpack

from sqlalchemy import event
from sqlalchemy.orm import Session

from djctl import api, config, payload
from djctl.handlers import encode_call, encode_job
from djctl.limits import NONE, LimitOptions, Limits
from djctl.queue import direct, doorbell, inserts, migrations
from djctl.queue.engines import describe

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
    limits: Limits = NONE

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
        self.limits.validated()
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
        # A job without limits inserts exactly the columns it did before they existed.
        **(opts.limits.columns() if opts.limits != NONE else {}),
    }


def _ring() -> None:
    doorbell.ring_for(config.current().database_url)


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
        ids = inserts.insert_rows(session, rows, session.get_bind().dialect.name)
        event.listen(session, "after_commit", lambda _s: _ring(), once=True)
        return ids
    eng = api.engine()
    # A job with limits may need more than one statement (its gate's row, a unique key's
    # holder): those go through inserts.insert_rows in a transaction, below.
    plain = len(rows) == 1 and inserts.single_statement(rows[0])
    if plain and eng.dialect.name in direct.DIALECTS:
        ids = [direct.insert_one(eng, rows[0])]
    elif plain and eng.dialect.name != "sqlite":
        # One INSERT is atomic on its own: without BEGIN and COMMIT it is one round
        # trip instead of three, which is most of what an enqueue costs.
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            ids = inserts.insert_rows(conn, rows, eng.dialect.name)
    else:
        with eng.begin() as conn:
            ids = inserts.insert_rows(conn, rows, eng.dialect.name)
    _ring()
    return ids


def enqueue(
    job: Any,
    *,
    priority: int = 0,
    run_at: datetime | None = None,
    queue: str | None = None,
    session: Session | None = None,
    **limits: Unpack[LimitOptions],
) -> int:
    """Put ``job`` (an object with ``perform()``) on the queue; returns the job's id.

    With ``session``, the row is inserted in that SQLAlchemy session and commits or
    rolls back with it. Raises TypeError if the job holds anything JSON cannot carry.

    Limits (each also read from the job's attribute of the same name): at most
    ``concurrency_limit`` (default 1) jobs of ``concurrency_key`` run at once, on every
    host; ``throttle=(key, n, period)`` starts at most n jobs of key per period; with
    ``unique_key``, when a job holding that key is still queued (``unique_while=
    "running"``: or running) nothing is added and that job's id is returned.
    """
    queue = queue if queue is not None else getattr(job, "queue_name", None)
    opts = Options(priority, run_at, queue, Limits.of(job, **limits)).validated()
    return _insert([_row(encode_job(job), opts, _now())], session)[0]


def enqueue_many(
    jobs: Iterable[Any],
    *,
    priority: int = 0,
    run_at: datetime | None = None,
    queue: str | None = None,
    session: Session | None = None,
    **limits: Unpack[LimitOptions],
) -> list[int]:
    """Put many jobs on the queue in one round trip; returns their ids in order.

    Every job is encoded before anything is written: one bad job enqueues none. The
    limit options apply to every job (a job's own attributes where an option is not given).
    """
    now = _now()
    rows = []
    for job in jobs:
        q = queue if queue is not None else getattr(job, "queue_name", None)
        rows.append(_row(encode_job(job), Options(priority, run_at, q, Limits.of(job, **limits)).validated(), now))
    return _insert(rows, session) if rows else []


async def aenqueue(
    job: Any,
    *,
    priority: int = 0,
    run_at: datetime | None = None,
    queue: str | None = None,
    session: AsyncSession | None = None,
    **limits: Unpack[LimitOptions],
) -> int:
    """:func:`enqueue` for async code: the same options, and the event loop is never blocked.

    With ``session`` (an ``AsyncSession``), the row is inserted in that session's
    transaction, through its own async driver, and commits or rolls back with it.
    """
    queue = queue if queue is not None else getattr(job, "queue_name", None)
    opts = Options(priority, run_at, queue, Limits.of(job, **limits)).validated()
    return (await _ainsert([_row(encode_job(job), opts, _now())], session))[0]


async def aenqueue_many(
    jobs: Iterable[Any],
    *,
    priority: int = 0,
    run_at: datetime | None = None,
    queue: str | None = None,
    session: AsyncSession | None = None,
    **limits: Unpack[LimitOptions],
) -> list[int]:
    """:func:`enqueue_many` for async code: one round trip, ids in order, one bad job enqueues none."""
    now = _now()
    rows = []
    for job in jobs:
        q = queue if queue is not None else getattr(job, "queue_name", None)
        rows.append(_row(encode_job(job), Options(priority, run_at, q, Limits.of(job, **limits)).validated(), now))
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
    **limits: Unpack[LimitOptions],
) -> Any:
    """``delay(photo).upload(size=3)`` or ``delay(send_mail)(to)``: the call runs later, on a worker."""
    return _Delayed(target, Options(priority, run_at, queue, Limits.of(None, **limits)), session)


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

    def __init__(self, fn: Callable, priority: int, run_at: RunAt, queue: str | None, limits: dict):
        functools.update_wrapper(self, fn)
        self.now = fn
        self._opts = (priority, run_at, queue)
        self._limits = limits

    def _options(self, args: tuple, kwargs: dict) -> Options:
        priority, run_at, queue = self._opts
        # A limit given as a function is computed from the call's arguments (self first).
        limits = {k: v(*args, **kwargs) if callable(v) else v for k, v in self._limits.items()}
        return Options(priority, _resolve_run_at(run_at), queue, Limits.of(None, **limits))

    def __call__(self, *args: Any, **kwargs: Any) -> int:
        return _enqueue_call(encode_call(self.now, None, args, kwargs), self._options(args, kwargs))

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
        return _enqueue_call(data, self._func._options((self._obj, *args), kwargs))


def handle_asynchronously(
    fn: Callable | None = None,
    *,
    priority: int = 0,
    run_at: RunAt = None,
    queue: str | None = None,
    **limits: Any,
) -> Any:
    """Make a function or method always run on a worker: calling it enqueues; ``.now()`` runs it here.

    ``run_at`` may be a datetime, a timedelta from now, or a callable returning a datetime.
    The limit options of :func:`enqueue` may each be a value or a function of the call's
    arguments (``self`` first): ``concurrency_key=lambda account_id: f"account:{account_id}"``.
    """
    unknown = set(limits) - set(LimitOptions.__annotations__)
    if unknown:
        raise TypeError(f"handle_asynchronously() got unexpected options {sorted(unknown)}")

    def wrap(f: Callable) -> _AsyncFunction:
        if not inspect.isfunction(f):
            raise TypeError("handle_asynchronously decorates functions and methods")
        payload.register_module(f.__module__)
        return _AsyncFunction(f, priority, run_at, queue, limits)

    return wrap(fn) if fn is not None else wrap
