"""Bulk-loading delayed_jobs rows in one statement per dialect (generate_series, a recursive CTE,
MariaDB's sequence tables) — a million rows in seconds, without going through enqueue."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, bindparam, text

from djctl.queue.schema import Timestamp

HANDLER = json.dumps({"job": "bench.jobs:Noop", "state": {}}, separators=(",", ":"))

_COLUMNS = "priority, attempts, handler, last_error, run_at, failed_at, queue, created_at, updated_at"

# kind "dead": half failed, half scheduled a day ahead, over four queues and three priorities.
# kind "ready": runnable now, the default queue, priority 0.
_VALUES = {
    "dead": (
        "g % 3, CASE WHEN g % 2 = 0 THEN 25 ELSE 0 END, :handler, "
        "CASE WHEN g % 2 = 0 THEN 'RuntimeError: boom' ELSE NULL END, "
        "CASE WHEN g % 2 = 0 THEN :past ELSE :future END, "
        "CASE WHEN g % 2 = 0 THEN :past ELSE NULL END, "
        "CASE g % 4 WHEN 0 THEN NULL WHEN 1 THEN 'mail' WHEN 2 THEN 'reports' ELSE 'default' END, :past, :past"
    ),
    "ready": "0, 0, :handler, NULL, :past, NULL, NULL, :past, :past",
}


def _statement(dialect: str, kind: str, n: int):
    values = _VALUES[kind]
    if dialect == "postgresql":
        sql = f"INSERT INTO delayed_jobs ({_COLUMNS}) SELECT {values} FROM generate_series(1, {n}) AS s(g)"
    elif dialect == "sqlite":
        sql = (f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) "
               f"INSERT INTO delayed_jobs ({_COLUMNS}) SELECT {values} FROM s")
    else:
        sql = f"INSERT INTO delayed_jobs ({_COLUMNS}) SELECT {values} FROM (SELECT seq AS g FROM seq_1_to_{n}) AS s"
    names = [name for name in ("past", "future") if f":{name}" in sql]
    return text(sql).bindparams(*(bindparam(name, type_=Timestamp) for name in names))


def insert_rows(engine: Engine, n: int, kind: str = "ready") -> None:
    """Insert ``n`` rows of ``kind`` ("ready" or "dead": failed and scheduled) in one statement."""
    if n <= 0:
        return
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    params = {"handler": HANDLER, "past": now - timedelta(days=1)}
    if kind == "dead":
        params["future"] = now + timedelta(days=1)
    with engine.begin() as conn:
        conn.execute(_statement(engine.dialect.name, kind, n), params)
    if engine.dialect.name == "postgresql":
        # What autovacuum would soon do after a load this size; the planner needs it.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE delayed_jobs")
