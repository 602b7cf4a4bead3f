"""Operator actions on the queue — retry, delete, clear, cancel, pause — with one set of rules for every front end.

``djctl retry``, ``djctl clear`` and the console's keys all come here, so a job the
command line refuses the console refuses too, for the same reason.

**The retry rule.** A job may be retried when it has *failed for good* (``failed_at``
set) or when it is *waiting for its next attempt* (it ran and failed at least once,
``attempts > 0``, and no worker holds it). Retrying runs it again now, its attempts
counted from zero; its ``last_error`` stays readable until it runs. A recurring schedule
that no worker holds may be retried too: it runs now and then keeps its period (an
operator's "run it now"). Every other job is refused and nothing about it changes:

- a **running** job (claimed by a worker, ``locked_at`` set): never retried under the
  worker that holds it — that worker finishes it, and a retry would let a second worker
  run it at the same time or run it again once it has completed;
- a job that **has not failed** (never run yet, whether ready or scheduled for later):
  there is nothing to retry, and running it early would override the ``run_at`` its
  application chose;
- an **unknown** id (never existed, or deleted — a job that completed is deleted).

**The cancel rule.** A job that has not failed may be cancelled, running or not: it is
kept as *failed*, with ``last_error`` saying who cancelled it and when (and which worker
held it), rather than deleted — so the console's failed list and ``djctl show`` tell the
next operator what happened, and a cancel by mistake is undone with ``djctl retry``. A
running job's worker finds its claim gone within a second and kills the job's executor
(see worker/watch.py); no worker claims a failed job, so it never runs again. A job
that has failed already, or is gone (it finished, or was deleted), is refused.

**The pause rule.** A paused queue keeps its jobs and takes new ones; no worker on any
host claims from it (the claim reads ``djctl_paused_queues`` in its own statement). A
queue is paused by name; a name that no job has ever used is refused (a typo would pause
nothing) unless forced; ``*`` (``--all``) pauses every queue, those not yet named too.

Each condition sits in the same statement as the change it guards (no read-then-write),
so a worker claiming or completing a job between an operator's look and the change
cannot make a completed job run again. Actions on ids are all or nothing: when any id is
refused, nothing changes, and the result says which ids were refused and why.
"""

from __future__ import annotations

import enum
import getpass
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, String, and_, case, exists, insert, literal, or_, select, true, update
from sqlalchemy import delete as delete_rows
from sqlalchemy.engine import Row
from sqlalchemy.sql.elements import ColumnElement

from djctl import clock, config
from djctl.queue import doorbell
from djctl.queue.schema import Timestamp, delayed_jobs, djctl_paused_queues
from djctl.queue.stats import EVERY_QUEUE, FailedFilter, paused_queues

_c = delayed_jobs.c


class Every(enum.Enum):
    """Every queue, as opposed to one queue (None names the default queue)."""

    QUEUE = "every queue"


EVERY = Every.QUEUE
QueueChoice = str | None | Every
"""A queue name, None for the default queue, or :data:`EVERY`."""


class Refusal(enum.Enum):
    """Why an action left a job alone."""

    UNKNOWN = "unknown"
    RUNNING = "running"
    NOT_FAILED = "has not failed"
    FAILED = "has failed already"


@dataclass(frozen=True)
class Outcome:
    """What an action did: ``done`` the ids changed (or deleted), ``refused`` the ids left
    alone with the reason. With any refusal, ``done`` is empty (all or nothing)."""

    done: tuple[int, ...] = ()
    refused: Mapping[int, Refusal] = field(default_factory=dict)

    def refused_for(self, *reasons: Refusal) -> list[int]:
        """The refused ids whose reason is one of ``reasons``, in order."""
        return sorted(i for i, r in self.refused.items() if r in reasons)


@dataclass(frozen=True)
class Cleared:
    """What :func:`clear` deleted: ordinary jobs and recurring schedules, counted apart."""

    jobs: int
    schedules: int

    def sentence(self, queue: QueueChoice = EVERY) -> str:
        """The one line a front end shows: ``Deleted 3 jobs and 1 recurring schedule from queue mail.``"""
        where = "" if queue is EVERY else f" from queue {_label(queue)}"
        if self.jobs == 0 and self.schedules == 0 and queue is not EVERY:
            return f"No job in queue {_label(queue)}: nothing deleted."
        parts = [_plural(self.jobs, "job")] if self.jobs or not self.schedules else []
        if self.schedules:
            parts.append(_plural(self.schedules, "recurring schedule"))
        return f"Deleted {' and '.join(parts)}{where}."


def retryable() -> ColumnElement[bool]:
    """The retry rule as one SQL condition: failed for good, or waiting for its next
    attempt, or a recurring schedule waiting for its next period."""
    waiting = or_(_c.attempts > 0, _c.schedule_key.is_not(None))
    return or_(_c.failed_at.is_not(None), and_(_c.locked_at.is_(None), waiting))


def retry(engine: Engine, ids: Sequence[int]) -> Outcome:
    """Run the jobs ``ids`` again now, under the retry rule (see the module docstring).

    All or nothing: if any id is refused, no job changes. Wakes this host's idle workers
    when something changed."""
    return _on_ids(engine, ids, _retry, retryable(), wakes=True)


def retry_failed(engine: Engine, queue: QueueChoice = EVERY, flt: FailedFilter = FailedFilter()) -> Outcome:
    """Run again now every failed job of ``queue`` that ``flt`` matches; the ids retried."""
    return _on_all(engine, _failed(queue, flt), _retry, wakes=True)


def deletable() -> ColumnElement[bool]:
    """The delete rule as one SQL condition: any job no worker is running (a failed one, too)."""
    return or_(_c.locked_at.is_(None), _c.failed_at.is_not(None))


def delete(engine: Engine, ids: Sequence[int]) -> Outcome:
    """Delete the jobs ``ids`` unless a worker is running one; all or nothing, as :func:`retry`."""
    return _on_ids(engine, ids, _delete, deletable(), wakes=False)


def delete_failed(engine: Engine, queue: QueueChoice = EVERY, flt: FailedFilter = FailedFilter()) -> Outcome:
    """Delete every failed job of ``queue`` that ``flt`` matches; the ids deleted."""
    return _on_all(engine, _failed(queue, flt), _delete, wakes=False)


CANCELLED = "Cancelled by "
"""How a cancelled job's ``last_error`` begins: a worker whose claim is gone tells a
cancel from a takeover by it."""


def operator(host: str, front_end: str) -> str:
    """Who acts, as a pause or a cancel records it: ``alice on railgun (djctl cancel)``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "someone"
    return f"{user} on {host} ({front_end})"


def cancellable() -> ColumnElement[bool]:
    """The cancel rule as one SQL condition: a job that has not failed, running or not."""
    return _c.failed_at.is_(None)


def cancel(engine: Engine, ids: Sequence[int], by: str) -> Outcome:
    """Cancel the jobs ``ids`` under the cancel rule (see the module docstring): each is
    kept as failed, its last_error naming ``by`` (who cancelled it), the time, and the
    worker that held it. All or nothing, as :func:`retry`. A running job's worker stops
    its executor as soon as it looks (within a second): that is not waited for here."""
    def change(where: ColumnElement[bool], now: datetime) -> Any:
        return _cancel(by, where, now)
    return _on_ids(engine, ids, change, cancellable(), wakes=False, why=_cancel_refusal)


@dataclass(frozen=True)
class Switched:
    """What :func:`pause` or :func:`resume` did, by queue name (``*``: every queue):
    ``changed`` now; ``unchanged`` already so (paused already, or not paused); ``unknown``
    names no job has used, refused — with any of those, nothing changed."""

    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()


Queues = Sequence[str | None] | Every
"""Queue names (None: the default queue), or :data:`EVERY`."""


def pause(engine: Engine, queues: Queues, by: str, force: bool = False) -> Switched:
    """Pause ``queues`` (or every queue, with :data:`EVERY`) on every host: no worker claims
    from them until :func:`resume`; their jobs stay, and enqueueing still works. ``by``
    says who paused them. A name no job has used is refused unless ``force``."""
    names = _names(queues)
    p = djctl_paused_queues.c
    now = clock.utcnow()
    with engine.begin() as conn:
        before = paused_queues(conn)
        for name in names:
            known = true() if force or name in (EVERY_QUEUE, _label(None)) else _used(name)
            fresh = ~exists().where(p.queue == name)
            row = select(literal(name, String), literal(now, Timestamp), literal(by, String)).where(known, fresh)
            conn.execute(insert(djctl_paused_queues).from_select([p.queue, p.paused_at, p.paused_by], row))
        # Not the rowcount: psycopg gives none for INSERT ... SELECT.
        after = paused_queues(conn)
        changed = [n for n in names if n in after and n not in before]
        unchanged = [n for n in names if n in before]
        unknown = [n for n in names if n not in after]
        if unknown:
            conn.rollback()
            return Switched(unknown=tuple(unknown))
    return Switched(tuple(changed), tuple(unchanged))


def resume(engine: Engine, queues: Queues) -> Switched:
    """Resume ``queues`` (every paused one, with :data:`EVERY`): workers claim from them
    again at once (idle ones are woken where the database allows). Resuming a queue that
    is not paused changes nothing; a name no job has used is refused."""
    names = _names(queues)
    p = djctl_paused_queues.c
    with engine.begin() as conn:
        changed, unchanged, unknown = [], [], []
        if queues is EVERY:
            changed = sorted(paused_queues(conn))
            conn.execute(delete_rows(djctl_paused_queues))
        for name in names if queues is not EVERY else ():
            if conn.execute(delete_rows(djctl_paused_queues).where(p.queue == name)).rowcount:
                changed.append(name)
            elif name == _label(None) or conn.scalar(select(_used(name))):
                unchanged.append(name)
            else:
                unknown.append(name)
        if unknown:
            conn.rollback()
            return Switched(unknown=tuple(unknown))
        if changed and conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_notify('djctl_jobs', '')")  # as an enqueue does
    if changed:
        wake(_url(engine))
    return Switched(tuple(changed), tuple(unchanged))


def clear(engine: Engine, queue: QueueChoice = EVERY) -> Cleared:
    """Delete every job of ``queue`` (default: every queue), running ones and recurring
    schedules included; counts, not ids (there may be millions). A running job's worker
    finds it gone and changes nothing."""
    where = _queue(queue)
    with engine.begin() as conn:
        schedules = conn.execute(delete_rows(delayed_jobs).where(where, _c.schedule_key.is_not(None))).rowcount
        jobs = conn.execute(delete_rows(delayed_jobs).where(where)).rowcount
    return Cleared(int(jobs or 0), int(schedules or 0))


def wake(database_url: str) -> None:
    """Wake this host's idle workers of ``database_url`` after a commit that made work
    ready (PostgreSQL's trigger does it there); best effort, never raises."""
    doorbell.ring_for(database_url)


# -- the two shapes of action --------------------------------------------------------------

Change = Callable[[ColumnElement[bool], datetime], Any]
"""Builds the UPDATE or DELETE of the rows a condition selects, at ``now``."""


def _retry(where: ColumnElement[bool], now: datetime) -> Any:
    return update(delayed_jobs).where(where).values(
        failed_at=None, attempts=0, run_at=now, locked_at=None, locked_by=None, updated_at=now)


def _delete(where: ColumnElement[bool], now: datetime) -> Any:
    return delete_rows(delayed_jobs).where(where)


def _cancel(by: str, where: ColumnElement[bool], now: datetime) -> Any:
    held = case((_c.locked_by.is_not(None), literal("; it was claimed by ", String) + _c.locked_by),
                else_=literal("; it was not running", String))
    note = literal(f"{CANCELLED}{by} at {now:%Y-%m-%d %H:%M:%S} UTC", String) + held
    # last_error first: MySQL assigns in order, and it reads locked_by before it is cleared.
    return update(delayed_jobs).where(where).ordered_values(
        (_c.last_error, note), (_c.failed_at, now), (_c.locked_at, None), (_c.locked_by, None),
        (_c.updated_at, now))


def _on_ids(engine: Engine, ids: Sequence[int], change: Change, allowed: ColumnElement[bool],
            wakes: bool, why: Callable[[Row], Refusal] | None = None) -> Outcome:
    wanted = sorted(set(ids))
    if not wanted:
        return Outcome()
    now = clock.utcnow()
    with engine.begin() as conn:
        changed = _apply(conn, change, and_(_c.id.in_(wanted), allowed), now)
        refused = set(wanted) - set(changed)
        if refused:
            reasons = _reasons(conn, sorted(refused), why or _retry_refusal)
            conn.rollback()
            return Outcome(refused=reasons)
    if wakes:
        wake(_url(engine))
    return Outcome(done=tuple(wanted))


def _on_all(engine: Engine, where: ColumnElement[bool], change: Change, wakes: bool) -> Outcome:
    now = clock.utcnow()
    with engine.begin() as conn:
        done = _apply(conn, change, where, now)
    if done and wakes:
        wake(_url(engine))
    return Outcome(done=tuple(done))


def _apply(conn: Connection, change: Change, where: ColumnElement[bool], now: datetime) -> list[int]:
    """Change the rows ``where`` selects, the condition inside the statement; the ids changed.

    Where the database returns rows from an UPDATE or DELETE it says which itself. MySQL
    and MariaDB do not: there the rows are locked first (FOR UPDATE reads the latest
    committed rows) and the statement repeats the condition."""
    if conn.dialect.update_returning and conn.dialect.delete_returning:
        return sorted(conn.scalars(change(where, now).returning(_c.id)))
    ids = sorted(conn.scalars(select(_c.id).where(where).with_for_update()))
    for start in range(0, len(ids), 500):
        conn.execute(change(and_(_c.id.in_(ids[start:start + 500]), where), now))
    return ids


def _reasons(conn: Connection, ids: Iterable[int], why: Callable[[Row], Refusal]) -> dict[int, Refusal]:
    rows = {r.id: r for r in conn.execute(select(_c.id, _c.locked_at, _c.failed_at, _c.attempts)
                                          .where(_c.id.in_(list(ids))))}
    return {i: Refusal.UNKNOWN if rows.get(i) is None else why(rows[i]) for i in ids}


def _retry_refusal(r: Row) -> Refusal:
    return Refusal.RUNNING if r.failed_at is None and r.locked_at is not None else Refusal.NOT_FAILED


def _cancel_refusal(r: Row) -> Refusal:
    return Refusal.FAILED


def _names(queues: Queues) -> list[str]:
    """The paused-queues names of ``queues``, each once, in order."""
    if queues is EVERY:
        return [EVERY_QUEUE]
    names = list(dict.fromkeys(_label(q) for q in queues))
    if EVERY_QUEUE in names:
        raise ValueError(f"{EVERY_QUEUE!r} is not a queue name (every queue is --all)")
    return names


def _used(name: str) -> ColumnElement[bool]:
    """Some job (in any state) is in queue ``name``: it names a queue, not a typo."""
    return exists().where(_queue(name))


def _failed(queue: QueueChoice, flt: FailedFilter) -> ColumnElement[bool]:
    return and_(_c.failed_at.is_not(None), _queue(queue), *flt.clauses())


def _queue(queue: QueueChoice) -> ColumnElement[bool]:
    if queue is EVERY:
        return true()
    default = config.current().default_queue
    name = default if queue is None else queue
    if name == default:
        # Rows an older djctl stored with no queue are the default queue's too.
        return or_(_c.queue == name, _c.queue.is_(None))
    return _c.queue == name


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _label(queue: QueueChoice) -> str:
    return config.current().default_queue if queue is None else str(queue)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"
