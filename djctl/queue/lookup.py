"""Finding jobs and reading one whole: what ``djctl jobs``, ``djctl show`` and the
console's search and detail view share.

A listing is read per (queue, priority) group and per state, each part one range of
the ``delayed_jobs_depth`` index (queue, priority, failed_at, locked_at, run_at) taken
in that index's order and cut at the limit, so that its cost follows the number of
groups and the limit, not the number of rows. A class or text filter is checked on the
rows of those ranges as they are stepped over: a filter that few rows match reads
more of them (see bench/inspect.py for the figures). Handlers are read as JSON only:
nothing is imported, unpickled or evaluated to show a job.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, union_all
from sqlalchemy.sql.elements import ColumnElement

from djctl import config
from djctl.handlers import display_name
from djctl.queue import stats
from djctl.queue.schema import delayed_jobs

_c = delayed_jobs.c
_HANDLER_PREFIX = 1000
_ERROR_PREFIX = 500
MAX_LIMIT = 10_000
_MANY_GROUPS = 200  # past this, one statement per state rather than one part per group


class State(enum.Enum):
    """Where a job stands, in the order a listing shows them."""

    RUNNING = "running"
    READY = "ready"
    SCHEDULED = "scheduled"
    FAILED = "failed"


@dataclass(frozen=True)
class Search:
    """Which jobs a listing shows. ``queue`` None is every queue (the default queue's
    name matches the rows an older djctl stored with none); ``job_class`` matches the name
    of the job's class or function (``shop.jobs:Resize``), never its arguments; ``text``
    the handler or ``last_error`` (substrings, any case), or, when it is a number, the id."""

    queue: str | None = None
    states: tuple[State, ...] = tuple(State)
    job_class: str = ""
    text: str = ""
    limit: int = 50

    @property
    def job_id(self) -> int | None:
        """The id ``text`` names when it is a number: found by its key at once, where a
        substring search of a million handlers would read every one of them."""
        text = self.text.strip()
        return int(text) if text.isdigit() and len(text) < 19 else None

    def clauses(self) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = list(stats.FailedFilter(self.job_class, "").clauses())
        text = self.text.strip()
        if text and self.job_id is None:
            pat = stats._like(text)
            out.append(or_(_c.handler.ilike(pat, escape="\\"), _c.last_error.ilike(pat, escape="\\")))
        return out


@dataclass(frozen=True)
class JobRow:
    """One job as a listing shows it: ``error`` is the first line of ``last_error``."""

    id: int
    state: State
    name: str
    queue: str | None
    priority: int
    attempts: int
    run_at: datetime
    locked_by: str | None
    locked_at: datetime | None
    failed_at: datetime | None
    error: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 (naive UTC, as the table keeps them), the state by name."""
        out = asdict(self)
        out["state"] = self.state.value
        out["class"] = out.pop("name")
        for k in ("run_at", "locked_at", "failed_at"):
            out[k] = _iso(out[k])
        return out


@dataclass(frozen=True)
class JobDetail:
    """One job whole: every column, the handler decoded as JSON (never loaded), its state."""

    state: State
    columns: dict[str, Any]
    target: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    decode_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        cols = {k: _iso(v) if isinstance(v, datetime) else v for k, v in self.columns.items()}
        return {"id": cols["id"], "state": self.state.value, "class": self.target, "name": self.name,
                "arguments": self.arguments, "decode_error": self.decode_error, "columns": cols}


def state_of(failed_at: datetime | None, locked_at: datetime | None, run_at: datetime, now: datetime) -> State:
    """The state of a row with these columns at ``now`` (naive UTC)."""
    if failed_at is not None:
        return State.FAILED
    if locked_at is not None:
        return State.RUNNING
    return State.READY if run_at <= now else State.SCHEDULED


def find_jobs(conn: Connection, search: Search, now: datetime) -> list[JobRow]:
    """At most ``search.limit`` jobs matching ``search``, by state (running, ready,
    scheduled, failed); within a state as a worker would take them (running: longest
    held first; ready: priority then run_at; scheduled: soonest first; failed: newest first)."""
    if search.job_id is not None:
        # One row by its key, whatever the number of rows: its state decided here.
        where = [_c.id == search.job_id, *search.clauses()]
        if search.queue is not None:
            where.append(_queue(search.queue))
        rows = [(_state(r, now), r) for r in conn.execute(select(*_columns()).where(*where))]
        return [_row(r, state) for state, r in rows if state in search.states]
    groups = _groups(conn, search.queue)
    found: list[JobRow] = []
    for state in State:
        if state not in search.states or len(found) >= search.limit:
            continue
        want = search.limit - len(found)
        found += _of_state(conn, state, groups, search, now, want)
    return found


def _groups(conn: Connection, queue: str | None) -> list[stats.Group] | None:
    """The (queue, priority) groups to read (None: too many, read without them)."""
    found = stats.groups(conn, most=_MANY_GROUPS)
    if found is None or queue is None:
        return found
    default = config.current().default_queue
    names = {queue, None} if queue == default else {queue}
    return [g for g in found if g[0] in names]


_ORDER = {
    State.RUNNING: (_c.locked_at, _c.id),
    State.READY: (_c.priority, _c.run_at, _c.id),
    State.SCHEDULED: (_c.run_at, _c.id),
    State.FAILED: (_c.failed_at.desc(), _c.id.desc()),
}
# Within one group, the depth index's own order, every column of its prefix named (for
# PostgreSQL an IS NULL is no equality when it decides whether the index gives the
# order) and no tie-breaker (that would sort every row of the range).
_INDEX_ORDER = {
    State.RUNNING: (_c.queue, _c.priority, _c.failed_at, _c.locked_at),
    State.READY: (_c.queue, _c.priority, _c.failed_at, _c.locked_at, _c.run_at),
    State.SCHEDULED: (_c.queue, _c.priority, _c.failed_at, _c.locked_at, _c.run_at),
    State.FAILED: (_c.queue.desc(), _c.priority.desc(), _c.failed_at.desc()),
}


def _where(state: State, now: datetime) -> ColumnElement[bool]:
    if state is State.FAILED:
        return _c.failed_at.is_not(None)
    if state is State.RUNNING:
        return and_(_c.failed_at.is_(None), _c.locked_at.is_not(None))
    waiting = and_(_c.failed_at.is_(None), _c.locked_at.is_(None))
    return and_(waiting, _c.run_at <= now if state is State.READY else _c.run_at > now)


def _columns() -> list[Any]:
    return [_c.id, _c.queue, _c.priority, _c.attempts, _c.run_at, _c.locked_by, _c.locked_at, _c.failed_at,
            func.substr(_c.handler, 1, _HANDLER_PREFIX).label("handler"),
            func.substr(_c.last_error, 1, _ERROR_PREFIX).label("error")]


def _of_state(conn: Connection, state: State, groups: list[stats.Group] | None, search: Search,
              now: datetime, limit: int) -> list[JobRow]:
    where = [_where(state, now), *search.clauses()]
    order = _ORDER[state]
    if groups is None:
        if search.queue is not None:
            where.append(_queue(search.queue))
        stmt = select(*_columns()).where(*where).order_by(*order).limit(limit)
        rows = list(conn.execute(stmt))
    elif not groups:
        return []
    else:
        # The sort keys of each group's first ``limit`` rows, then the whole of the
        # ``limit`` rows that come first over all groups: the handlers of only those are read.
        keys: list[Any] = []
        for chunk in stats._chunks(groups):
            parts = [select(_c.id, _c.priority, _c.run_at, _c.locked_at, _c.failed_at)
                     .where(stats._in_group(g), *where).order_by(*_INDEX_ORDER[state]).limit(limit).subquery()
                     for g in chunk]
            union = union_all(*[select(*p.c) for p in parts]).subquery()
            keys += conn.execute(select(*union.c))
        keys.sort(key=_sort_key(state))
        ids = [int(k.id) for k in keys[:limit]]
        rows = list(conn.execute(select(*_columns()).where(_c.id.in_(ids)))) if ids else []
    rows.sort(key=_sort_key(state))
    return [_row(r, state) for r in rows[:limit]]


def _sort_key(state: State):
    if state is State.FAILED:
        return lambda r: (-r.failed_at.timestamp(), -r.id)
    if state is State.RUNNING:
        return lambda r: (r.locked_at, r.id)
    if state is State.READY:
        return lambda r: (r.priority, r.run_at, r.id)
    return lambda r: (r.run_at, r.id)


def _state(r: Any, now: datetime) -> State:
    return state_of(r.failed_at, r.locked_at, r.run_at, now)


def _row(r: Any, state: State) -> JobRow:
    return JobRow(int(r.id), state, stats.job_name(r.handler or ""), r.queue, int(r.priority), int(r.attempts),
                  r.run_at, r.locked_by, r.locked_at, r.failed_at, (r.error or "").strip().split("\n", 1)[0])


def _queue(name: str) -> ColumnElement[bool]:
    if name == config.current().default_queue:
        return or_(_c.queue == name, _c.queue.is_(None))
    return _c.queue == name


def queue_exists(conn: Connection, name: str) -> bool:
    """Whether any job (of any state) is in queue ``name`` (the default queue always is)."""
    if name == config.current().default_queue:
        return True
    return conn.execute(select(_c.id).where(_c.queue == name).limit(1)).first() is not None


def show_job(conn: Connection, job_id: int, now: datetime) -> JobDetail | None:
    """Job ``job_id`` whole, or None when there is none (a job that completes is deleted)."""
    row = conn.execute(select(delayed_jobs).where(_c.id == job_id)).mappings().first()
    if row is None:
        return None
    columns = dict(row)
    state = state_of(row["failed_at"], row["locked_at"], row["run_at"], now)
    return decode(columns, state)


def decode(columns: dict[str, Any], state: State) -> JobDetail:
    """The handler of ``columns`` read as JSON: its target, name and arguments, or why it does not decode."""
    try:
        data = json.loads(columns.get("handler") or "")
        if not isinstance(data, dict) or not ({"job", "call"} & data.keys()):
            raise ValueError("not a djctl handler (no \"job\" or \"call\")")
    except (ValueError, RecursionError) as e:
        return JobDetail(state, columns, "?", "?", decode_error=f"handler does not decode: {e}")
    target = str(data.get("job") or data.get("call"))
    args = {k: v for k, v in data.items() if k not in ("job", "call")}
    return JobDetail(state, columns, target, display_name(data), args)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def render_jobs(rows: Sequence[JobRow]) -> str:
    """The ``djctl jobs`` table: id, state, class, queue, priority, attempts, run_at, locked_by, error."""
    if not rows:
        return "(no jobs)"
    default = config.current().default_queue
    header = ("id", "state", "class", "queue", "pri", "att", "run_at", "locked_by", "last_error")
    body = [(str(r.id), r.state.value, r.name, r.queue if r.queue is not None else default, str(r.priority),
             str(r.attempts), r.run_at.strftime("%Y-%m-%d %H:%M:%S"), r.locked_by or "", r.error) for r in rows]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header) - 1)]
    lines = []
    for line in [header, *body]:
        pairs = enumerate(zip(line[:-1], widths, strict=True))
        cells = [c.rjust(w) if i in (0, 4, 5) else c.ljust(w) for i, (c, w) in pairs]
        lines.append("  ".join([*cells, line[-1]]).rstrip())
    return "\n".join(lines)


def render_detail(d: JobDetail) -> str:
    """``djctl show``: the job's class and arguments, then every column, then the full traceback."""
    lines = [f"Job {d.columns['id']} ({d.name}): {d.state.value}", f"  class: {d.target}"]
    if d.decode_error:
        lines.append(f"  {d.decode_error}")
    for key, value in d.arguments.items():
        lines.append(f"  {key}: {json.dumps(value, ensure_ascii=False)}")
    lines.append("")
    width = max(len(k) for k in d.columns)
    for key, value in d.columns.items():
        if key in ("handler", "last_error"):
            continue
        shown = "" if value is None else value.isoformat(sep=" ") if isinstance(value, datetime) else str(value)
        lines.append(f"{key.ljust(width)}  {shown}")
    lines.append(f"{'handler'.ljust(width)}  {d.columns.get('handler')}")
    error = d.columns.get("last_error")
    lines.append("")
    lines.append("last_error:" if error else "last_error: (none)")
    if error:
        lines.append(str(error).rstrip())
    return "\n".join(lines)
