"""The INSERTs of enqueue, per dialect: one statement for many rows, unique keys by the
database's constraint, the gates' rows, and MySQL's packet limit checked first."""

from __future__ import annotations

import json
import os
from typing import Any

from sqlalchemy import bindparam, insert, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from djctl.queue import gates
from djctl.queue.schema import Timestamp, delayed_jobs

LIMIT_COLUMNS = ("gate", "concurrency_limit", "throttle_key", "throttle_limit", "throttle_period_ms",
                 "unique_key", "unique_while")
"""The columns of a job's limits (djctl.limits.Limits.columns): NULL in a row without."""
NO_COLUMNS = dict.fromkeys(LIMIT_COLUMNS)


def limited(row: dict) -> bool:
    """Whether a row to insert has a gate or a unique key."""
    return row.get("gate") is not None or row.get("unique_key") is not None


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


def insert_rows(execute: Any, rows: list[dict], dialect: str) -> list[int]:
    """Insert ``rows`` (a Connection's or a Session's transaction, or one autocommitted
    statement for a single plain row); their ids in the order of ``rows``. A row whose
    unique key a queued job holds is not inserted: that job's id stands for it."""
    if dialect in ("mysql", "mariadb"):
        _check_packet(execute, rows)
    if not any(limited(r) for r in rows):
        return _plain_rows(execute, rows, dialect)
    rows = [{**NO_COLUMNS, **r} for r in rows]
    gates.ensure(execute, dialect, gates.gate_names(rows))
    if not any(r["unique_key"] is not None for r in rows):
        return _plain_rows(execute, rows, dialect)
    # Row by row, in order: a later row may repeat an earlier one's key.
    return [_unique_row(execute, r, dialect) if r["unique_key"] is not None else _plain_rows(execute, [r], dialect)[0]
            for r in rows]


def single_statement(row: dict) -> bool:
    """Whether ``row`` is inserted by one statement (then it needs no transaction)."""
    return not limited(row)


_UNIQUE_TRIES = 20


def _unique_row(execute: Any, row: dict, dialect: str) -> int:
    """Insert ``row`` unless a job holds its unique key; the id of whichever job holds it.

    The unique index decides, never a read before the write: of concurrent enqueuers of
    one key exactly one inserts. The holder read afterwards may have started (and so
    freed a key held while queued) meanwhile; then the insert is tried again.
    """
    find = text("SELECT id FROM delayed_jobs WHERE unique_key = :k")
    for _ in range(_UNIQUE_TRIES):
        new = _try_insert(execute, row, dialect)
        if new is not None:
            return new
        found = execute.scalar(find, {"k": row["unique_key"]})
        if found is not None:
            return int(found)
    raise RuntimeError(f"unique key {row['unique_key']!r} was taken and freed {_UNIQUE_TRIES} times "
                       "while this job was enqueued; try again")


def _try_insert(execute: Any, row: dict, dialect: str) -> int | None:
    if dialect in ("postgresql", "sqlite"):
        ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(delayed_jobs)
        stmt = ins.on_conflict_do_nothing(
            index_elements=[delayed_jobs.c.unique_key], index_where=delayed_jobs.c.unique_key.isnot(None),
        ).returning(delayed_jobs.c.id)
        return execute.scalar(stmt, row)
    # MySQL/MariaDB have no ON CONFLICT DO NOTHING but INSERT IGNORE, which would hide
    # other errors too: the duplicate key error itself, in a savepoint when in a transaction.
    # (A limited row is always inserted in a transaction: see single_statement.)
    try:
        with execute.begin_nested():
            return execute.scalar(insert(delayed_jobs).returning(delayed_jobs.c.id), row)
    except IntegrityError as e:
        if _mysql_code(e) != 1062:  # ER_DUP_ENTRY
            raise
        return None


def _mysql_code(e: IntegrityError) -> int | None:
    args = getattr(e.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _plain_rows(execute: Any, rows: list[dict], dialect: str) -> list[int]:
    """Insert ``rows`` in one statement; their ids in the order of ``rows``."""
    stmt = insert(delayed_jobs)
    if len(rows) == 1:
        return [execute.scalar(stmt.returning(delayed_jobs.c.id), rows[0])]
    if dialect == "sqlite":
        # SQLite numbers one statement's rows in VALUES order; asking SQLAlchemy to
        # sort RETURNING would make it insert row by row.
        return sorted(execute.scalars(stmt.returning(delayed_jobs.c.id), rows).all())
    if dialect == "postgresql" and not any(limited(r) for r in rows):
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


