"""Queue depth and job listings: the queries the CLI and the console share."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, Row, and_, bindparam, func, literal, or_, select, text, union_all
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from djctl import config
from djctl.handlers import display_name
from djctl.queue.gates import describe
from djctl.queue.schema import Timestamp, delayed_jobs, djctl_paused_queues

Group = tuple[str | None, int]


@dataclass(frozen=True)
class Depth:
    """How many jobs of one queue and priority are in each state."""

    queue: str | None
    priority: int
    ready: int
    scheduled: int
    running: int
    failed: int
    # Keyword-only, so that Depth and QueueRow keep their positional fields.
    waiting: int = field(default=0, kw_only=True)
    """Ready, but waiting for a slot of their concurrency key or for their throttle (not in ``ready``)."""
    waiting_on: dict[str, int] = field(default_factory=dict, kw_only=True)
    """How many of ``waiting`` wait on each gate (``concurrency:<key>``, ``throttle:<key>``)."""

    def as_dict(self) -> dict:
        return asdict(self)


def _with_waiting(conn: Connection, rows: list[Depth], now: datetime) -> list[Depth]:
    """``rows`` with the jobs that wait on a gate counted as waiting, not ready. Read from
    the gate index, which holds gated jobs only: nothing to read when no job has a key."""
    found: dict[Group, dict[str, int]] = {}
    for queue, priority, gate, n in conn.execute(_WAITING, {"now": now}):
        found.setdefault((queue, int(priority)), {})[gate] = int(n)
    if not found:
        return rows
    out = []
    for d in rows:
        on = found.get((d.queue, d.priority), {})
        waiting = sum(on.values())
        out.append(replace(d, ready=d.ready - waiting, waiting=waiting, waiting_on=on))
    return out


_WAITING = text(
    "SELECT queue, priority, gate, COUNT(*) FROM delayed_jobs "
    "WHERE gate IS NOT NULL AND failed_at IS NULL AND locked_at IS NULL AND run_at <= :now "
    "GROUP BY queue, priority, gate"
).bindparams(bindparam("now", type_=Timestamp))


def queue_depth(conn: Connection, now: datetime) -> list[Depth]:
    """Counts per queue and priority, the default queue (None) first, then by name and priority.

    With a few groups, every part is a range of the delayed_jobs_depth index (queue,
    priority, failed_at, locked_at, run_at): the groups are found by one seek each, then
    each state of a group is counted over its own range, so each index entry is stepped
    over once with no expression evaluated per row. With many groups those statements
    cost more than one grouped scan of the index, which is used instead.
    """
    found = groups(conn, most=_MANY_GROUPS)
    if found is None:
        rows = [Depth(q, int(p), int(a), int(b), int(c), int(d))
                for q, p, a, b, c, d in conn.execute(_DEPTH, {"now": now})]
        return _default_first(_with_waiting(conn, rows, now))
    t = delayed_jobs.c
    out = []
    for group in found:
        where = _in_group(group)
        alive = and_(where, t.failed_at.is_(None))
        waiting = and_(alive, t.locked_at.is_(None))
        counts = conn.execute(select(
            _count(and_(waiting, t.run_at <= now)),
            _count(and_(waiting, t.run_at > now)),
            _count(and_(alive, t.locked_at.is_not(None))),
            _count(and_(where, t.failed_at.is_not(None))),
        )).one()
        out.append(Depth(group[0], group[1], *(int(n) for n in counts)))
    return _default_first(_with_waiting(conn, out, now))


def queue_label(queue: str | None) -> str:
    """A queue's name as shown: jobs an older djctl stored with no queue are the default queue's."""
    return config.current().default_queue if queue is None else queue


def _default_first(rows: list[Depth]) -> list[Depth]:
    """The default queue first (and jobs an older djctl stored with no queue), then by name and priority."""
    first = (None, config.current().default_queue)
    return sorted(rows, key=lambda d: (d.queue not in first, d.queue or "", d.priority))


_MANY_GROUPS = 32  # past this, one grouped scan costs less than statements per group
_DEPTH = text(
    "SELECT queue, priority, "
    "SUM(CASE WHEN failed_at IS NULL AND locked_at IS NULL AND run_at <= :now THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN failed_at IS NULL AND locked_at IS NULL AND run_at > :now THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN failed_at IS NULL AND locked_at IS NOT NULL THEN 1 ELSE 0 END), "
    "SUM(CASE WHEN failed_at IS NOT NULL THEN 1 ELSE 0 END) "
    "FROM delayed_jobs GROUP BY queue, priority"
).bindparams(bindparam("now", type_=Timestamp))


def groups(conn: Connection, most: int | None = None) -> list[Group] | None:
    """Every (queue, priority) in the table, the default queue first: a loose scan of
    the depth index, one short seek per group whatever the number of rows. None once
    more than ``most`` are found."""
    t = delayed_jobs.c

    def first(column, *where):
        # ORDER BY the whole index prefix: PostgreSQL does not treat IS NULL as an
        # equality when it decides whether the index gives the order.
        stmt = select(column).where(*where).order_by(t.queue, t.priority).limit(1)
        return conn.execute(stmt).scalar_one_or_none()

    found: list[Group] = []

    def priorities(queue: str | None) -> bool:
        same = t.queue.is_(None) if queue is None else t.queue == queue
        priority = first(t.priority, same)
        while priority is not None:
            found.append((queue, int(priority)))
            if most is not None and len(found) > most:
                return False
            priority = first(t.priority, same, t.priority > priority)
        return True

    if not priorities(None):
        return None
    queue = first(t.queue, t.queue.is_not(None))
    while queue is not None:
        if not priorities(queue):
            return None
        queue = first(t.queue, t.queue > queue)
    return found


def _count(where):
    return select(func.count()).select_from(delayed_jobs).where(where).scalar_subquery()


EVERY_QUEUE = "*"
"""The paused-queues row that pauses every queue (``djctl pause --all``)."""


@dataclass(frozen=True)
class Pause:
    """A paused queue (:data:`EVERY_QUEUE` for every queue): since when (naive UTC), by whom."""

    queue: str
    paused_at: datetime
    paused_by: str

    @property
    def what(self) -> str:
        """``queue mail`` or ``every queue``."""
        return "every queue" if self.queue == EVERY_QUEUE else f"queue {self.queue}"

    @property
    def since(self) -> str:
        """``since 2026-12-02 09:50:01 UTC by alice on railgun (djctl pause)``"""
        return f"since {self.paused_at:%Y-%m-%d %H:%M:%S} UTC by {self.paused_by}"

    def sentence(self) -> str:
        """``queue mail paused since ... by ...``"""
        return f"{self.what} paused {self.since}"


def paused_queues(conn: Connection) -> dict[str, Pause]:
    """The paused queues by name (:data:`EVERY_QUEUE` when every queue is paused)."""
    p = djctl_paused_queues.c
    rows = conn.execute(select(p.queue, p.paused_at, p.paused_by).order_by(p.queue))
    return {r.queue: Pause(r.queue, r.paused_at, r.paused_by) for r in rows}


def is_paused(paused: dict[str, Pause], queue: str | None) -> bool:
    """Whether no worker claims from ``queue`` (None: the default queue) under ``paused``."""
    return queue_label(queue) in paused or EVERY_QUEUE in paused


def render_depth(rows: list[Depth], paused: dict[str, Pause] | None = None) -> str:
    """The ``djctl stats`` table; the waiting column and the gates waited on only when a
    job waits on one; a paused queue's name says so, and a line under the table says
    since when and by whom (for a paused queue with no job, too)."""
    paused = paused or {}
    gated = any(d.waiting for d in rows)
    header = ("queue", "priority", "ready", *(("waiting",) if gated else ()), "scheduled", "running", "failed")
    body = [
        (queue_label(d.queue) + (" (paused)" if is_paused(paused, d.queue) else ""), str(d.priority), str(d.ready),
         *((str(d.waiting),) if gated else ()), str(d.scheduled), str(d.running), str(d.failed))
        for d in rows
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = []
    for r in [header, *body]:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    if not body:
        lines.append("(no jobs)")
    if gated:
        lines += ["", *render_waiting(rows)]
    lines.extend(paused_lines(paused))
    return "\n".join(lines)


def render_waiting(rows: list[Depth]) -> list[str]:
    """One line per gate that jobs wait on: ``12 jobs wait for a slot of account:42``."""
    total: dict[str, int] = {}
    for d in rows:
        for gate, n in d.waiting_on.items():
            total[gate] = total.get(gate, 0) + n
    return [f"{n} job{'s' if n != 1 else ''} wait{'s' if n == 1 else ''} for {describe(gate)}"
            for gate, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))]


def paused_lines(paused: dict[str, Pause]) -> list[str]:
    """``Paused: queue mail since ... by ...; djctl resume mail resumes it``, one per paused queue."""
    return [f"Paused: {p.what} {p.since}; djctl resume {'--all' if p.queue == EVERY_QUEUE else p.queue} resumes it"
            for p in paused.values()]


# --- Failed jobs and the oldest ready job: more queries the console shares. ---
# Both take the (queue, priority) groups that queue_depth found, so that each part of
# the query is one range of an index: their cost depends on the number of groups, not
# on the number of rows in the table (past _MANY_GROUPS, oldest_ready scans instead).

_NAME_RE = re.compile(r'\{"(job|call)":"((?:[^"\\]|\\.)*)"(,"self":)?')
_HANDLER_PREFIX = 1000
_ERROR_PREFIX = 500


@dataclass(frozen=True)
class FailedJob:
    """A failed job as a list shows it: ``error`` is the first line of ``last_error``."""

    id: int
    name: str
    queue: str | None
    priority: int
    attempts: int
    failed_at: datetime
    error: str


@dataclass(frozen=True)
class FailedFilter:
    """Which failed jobs a listing shows: ``job_class`` matches the name of the job's
    class or function (``shop.jobs:Resize``), never its arguments, and ``text`` the
    handler or ``last_error`` (case-insensitive substrings; empty matches all)."""

    job_class: str = ""
    text: str = ""

    def clauses(self) -> list:
        t = delayed_jobs.c
        out = []
        if self.job_class:
            out.append(_names_job(t.handler, self.job_class))
        if self.text:
            pat = _like(self.text)
            out.append(or_(t.last_error.ilike(pat, escape="\\"), t.handler.ilike(pat, escape="\\")))
        return out


class _position(FunctionElement):
    """Where ``needle`` first occurs in ``haystack`` (1-based; 0: nowhere), on every dialect."""

    type = Integer()
    inherit_cache = True


@compiles(_position)
def _position_instr(element, compiler, **kw) -> str:
    haystack, needle = list(element.clauses)
    return f"instr({compiler.process(haystack, **kw)}, {compiler.process(needle, **kw)})"


@compiles(_position, "postgresql")
def _position_strpos(element, compiler, **kw) -> str:
    haystack, needle = list(element.clauses)
    return f"strpos({compiler.process(haystack, **kw)}, {compiler.process(needle, **kw)})"


def _names_job(handler, job_class: str):
    """``handler`` names a job class or function containing ``job_class``. A handler opens
    with ``{"job":"module:Class"`` or ``{"call":"module:function"`` and a name holds no
    quote: its head up to the first quote from the 10th character on is the key and the
    name, so a pattern anchored at both ends of that head never reaches the arguments."""
    head = func.substr(handler, 1, 9 + _position(func.substr(handler, 10), literal('"')))
    name = _like(job_class)
    return or_(head.ilike('{"job":"' + name + '"', escape="\\"),
               head.ilike('{"call":"' + name + '"', escape="\\"))


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _in_group(group: Group):
    t = delayed_jobs.c
    queue, priority = group
    return and_(t.queue.is_(None) if queue is None else t.queue == queue, t.priority == priority)


def job_name(handler: str) -> str:
    """delayed_job's display name of a handler, or of the first part of one (a long
    handler is read only in part); ``?`` when it names nothing."""
    try:
        return display_name(json.loads(handler))
    except (ValueError, TypeError, AttributeError, RecursionError):
        pass
    m = _NAME_RE.match(handler)
    if m is None:
        return "?"
    data: dict = {m[1]: m[2]}
    if m[3]:
        data["self"] = True
    return display_name(data)


def failed_jobs(conn: Connection, groups: Sequence[Group], flt: FailedFilter = FailedFilter(),
                limit: int = 100) -> list[FailedJob]:
    """The ``limit`` most recently failed jobs of ``groups`` matching ``flt``, newest first."""
    if limit <= 0:
        return []
    t = delayed_jobs.c
    found: list[Row[Any]] = []
    for chunk in _chunks(groups):
        parts = [
            select(t.id, t.queue, t.priority, t.attempts, t.failed_at,
                   func.substr(t.handler, 1, _HANDLER_PREFIX).label("handler"),
                   func.substr(t.last_error, 1, _ERROR_PREFIX).label("error"))
            .where(_in_group(g), t.failed_at.is_not(None), *flt.clauses())
            .order_by(t.queue.desc(), t.priority.desc(), t.failed_at.desc()).limit(limit).subquery()
            for g in chunk
        ]
        # Each group sorted and limited on its own, inside a subquery (SQLite allows no ORDER
        # BY / LIMIT on the members of a compound select), in the depth index's own order
        # (queue, priority, failed_at): the scan stops after ``limit`` rows. A tie-breaker
        # would sort every failed row of the group, and without queue and priority in the
        # ORDER BY PostgreSQL sorts them too when the group's queue IS NULL.
        union = union_all(*[select(*p.c) for p in parts]).subquery()
        found += conn.execute(select(*union.c).order_by(union.c.failed_at.desc(), union.c.id.desc()).limit(limit))
    found.sort(key=lambda r: (r.failed_at, r.id), reverse=True)
    return [
        FailedJob(int(r.id), job_name(r.handler or ""), r.queue, int(r.priority), int(r.attempts),
                  r.failed_at, (r.error or "").strip().split("\n", 1)[0])
        for r in found[:limit]
    ]


def count_failed(conn: Connection, groups: Sequence[Group], flt: FailedFilter = FailedFilter()) -> int:
    """How many failed jobs of ``groups`` match ``flt``. Without a text filter the
    caller can sum queue_depth's ``failed`` instead, which costs nothing more."""
    t = delayed_jobs.c
    return sum(
        int(conn.execute(select(func.count()).where(or_(*[_in_group(g) for g in chunk]), t.failed_at.is_not(None),
                                                    *flt.clauses())).scalar_one())
        for chunk in _chunks(groups)
    )


def oldest_ready(conn: Connection, now: datetime, groups: Sequence[Group]) -> dict[Group, datetime]:
    """The run_at of the oldest ready job of each group that has one (waiting on no key)."""
    t = delayed_jobs.c
    found: dict[Group, datetime] = {}
    if len(groups) > _MANY_GROUPS:  # one grouped statement, as for queue_depth
        wanted = set(groups)
        stmt = (select(t.queue, t.priority, func.min(t.run_at))
                .where(t.failed_at.is_(None), t.locked_at.is_(None), t.gate.is_(None), t.run_at <= now)
                .group_by(t.queue, t.priority))
        for queue, priority, oldest in conn.execute(stmt):
            if (queue, int(priority)) in wanted:
                found[(queue, int(priority))] = oldest
        return found
    if not groups:
        return found
    # ORDER BY ... LIMIT 1 rather than MIN(): one step down the claim index even for the
    # default queue, whose IS NULL PostgreSQL does not treat as an equality for ordering.
    parts = [
        select(literal(i).label("g"), t.run_at.label("oldest"))
        # gate IS NULL: jobs that wait on a key are not ready, and the claim index holds no other.
        .where(_in_group(g), t.failed_at.is_(None), t.locked_at.is_(None), t.gate.is_(None))
        .order_by(t.queue, t.priority, t.run_at).limit(1).subquery()
        for i, g in enumerate(groups)
    ]
    for i, oldest in conn.execute(union_all(*[select(*p.c) for p in parts])):
        if oldest is not None and oldest <= now:
            found[groups[int(i)]] = oldest
    return found


def _chunks(groups: Sequence[Group], size: int = 200) -> list[Sequence[Group]]:
    """``groups`` in slices small enough for one statement each: SQLite allows 500 terms
    in a compound SELECT and an expression 1,000 deep."""
    return [groups[i:i + size] for i in range(0, len(groups), size)]


def left_unrun(conn: Connection) -> dict[Group, int]:
    """How many waiting jobs of each (queue, priority) a worker with no app configured
    gave back unrun (``claims.LEFT``): they wait for a worker that can run them. Read
    from the locked_by index, whatever the number of other rows."""
    from djctl.queue.claims import LEFT

    t = delayed_jobs.c
    stmt = (select(t.queue, t.priority, func.count()).where(t.locked_by == LEFT, t.locked_at.is_(None),
                                                           t.failed_at.is_(None)).group_by(t.queue, t.priority))
    return {(q, int(p)): int(n) for q, p, n in conn.execute(stmt)}


def render_left(left: dict[Group, int]) -> str:
    """The line ``djctl stats`` adds when jobs wait for a worker with an app ('' when none)."""
    if not left:
        return ""
    total = sum(left.values())
    queues = ", ".join(sorted({queue_label(q) for q, _ in left}))
    return (f"{total} job{'s' if total != 1 else ''} ({queues}) left unrun by workers with no app configured, "
            "waiting for one that can run them: give the workers --app, DJ_APP or app in [tool.djctl]")
