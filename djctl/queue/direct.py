"""The cheapest durable insert of one job row: what every ``enqueue()`` outside a session pays.

The INSERT is compiled by SQLAlchemy once per dialect and set of columns, with the
column types' own bind processors (so a row is stored exactly as SQLAlchemy would
store it), and then run on the driver's own connection, checked out of djctl's pool:

- PostgreSQL: one prepared statement in autocommit, one round trip (the statement is
  its own transaction, committed with the server's default durability).
- SQLite: ``BEGIN IMMEDIATE``, the INSERT, ``COMMIT``, as every djctl writer does,
  under the engine's ``synchronous=FULL``.

Other databases, and inserts inside a caller's session, go through SQLAlchemy as before
(``enqueue._insert_rows``). Driver errors are raised as SQLAlchemy's ``DBAPIError``
subclasses, as the SQLAlchemy path raises them, and a connection the driver reports
dead is discarded from the pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, bindparam, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from djctl.queue.schema import delayed_jobs

DIALECTS = ("postgresql", "sqlite")
"""The databases whose single enqueue takes this path."""


@dataclass(frozen=True)
class _Statement:
    sql: str
    order: tuple[str, ...] | None
    """Parameter names in placeholder order for a positional driver (sqlite3), else None."""
    processors: Mapping[str, Callable[[Any], Any]]


_compiled: dict[tuple[str, tuple[str, ...]], _Statement] = {}
_lock = threading.Lock()


def _statement(dialect: Dialect, columns: tuple[str, ...]) -> _Statement:
    key = (dialect.name, columns)
    found = _compiled.get(key)
    if found is not None:
        return found
    stmt = insert(delayed_jobs).values({c: bindparam(c) for c in columns}).returning(delayed_jobs.c.id)
    compiled = stmt.compile(dialect=dialect)
    processors = {}
    for c in columns:
        process = delayed_jobs.c[c].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors[c] = process
    order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
    with _lock:
        found = _compiled.setdefault(key, _Statement(compiled.string, order, processors))
    return found


def insert_one(engine: Engine, row: Mapping[str, Any]) -> int:
    """Insert ``row`` (column name -> value) into delayed_jobs and commit it; the new id.

    Only for :data:`DIALECTS`. Raises ``sqlalchemy.exc.DBAPIError`` (its subclass
    for the driver's error) if the database refuses or cannot be reached."""
    dialect = engine.dialect
    statement = _statement(dialect, tuple(row))
    values = {k: (statement.processors[k](v) if k in statement.processors else v) for k, v in row.items()}
    params: Any = values if statement.order is None else tuple(values[k] for k in statement.order)
    # Checked out through a Connection, so that a failure to connect is reported (and a
    # dead pooled connection replaced) exactly as on every other path.
    with engine.connect() as connection:
        conn = connection.connection.driver_connection
        try:
            if dialect.name == "postgresql":
                return _insert_postgresql(conn, statement.sql, params)
            return _insert_sqlite(conn, statement.sql, params)
        except dialect.loaded_dbapi.Error as e:
            if dialect.is_disconnect(e, connection.connection.dbapi_connection, None):
                connection.invalidate(e)
            raise DBAPIError.instance(statement.sql, params, e, dialect.loaded_dbapi.Error, dialect=dialect) from e


def _insert_postgresql(conn: Any, sql: str, params: Any) -> int:
    # Autocommit for this one statement: no BEGIN and COMMIT round trips. The pool
    # hands out connections idle (not in a transaction), as setting it requires.
    conn.autocommit = True
    try:
        ((new_id,),) = conn.execute(sql, params, prepare=True).fetchall()
    finally:
        conn.autocommit = False
    return int(new_id)


def _insert_sqlite(conn: Any, sql: str, params: Any) -> int:
    # The engine turned sqlite3's own transaction handling off (isolation_level None):
    # the write lock is taken up front, as by every djctl writer.
    conn.execute("BEGIN IMMEDIATE")
    try:
        ((new_id,),) = conn.execute(sql, params).fetchall()  # stepped to its end before COMMIT
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return int(new_id)
