"""The raw database limit: a bare loop on djctl's own table and indexes, no queue library.

Each round is one transaction: delete the rows claimed in the previous round and claim
the next ``batch`` with ``UPDATE ... WHERE id IN (SELECT ... ORDER BY priority, run_at
LIMIT n FOR UPDATE SKIP LOCKED) RETURNING`` (on SQLite: a BEGIN IMMEDIATE transaction,
no SKIP LOCKED). Durability per commit stays on: PostgreSQL synchronous_commit as the
server has it (on by default), SQLite WAL with synchronous=FULL. This is the least
work a worker that claims a batch and records the previous batch's completions in the
same commit can do — what djctl's worker loop aims at.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from . import common, fill

_CLAIM = (
    "UPDATE delayed_jobs SET locked_at = {now}, locked_by = {me}, attempts = attempts + 1, updated_at = {now} "
    "WHERE id IN (SELECT id FROM delayed_jobs WHERE failed_at IS NULL AND locked_at IS NULL AND run_at <= {now} "
    "ORDER BY priority, run_at LIMIT {limit}{skip}) RETURNING id, handler"
)


def _pg_loop(conninfo: str, batch: int) -> None:
    import psycopg

    me = f"raw pid:{os.getpid()}"
    claim = _CLAIM.format(now="now()", me="%s", limit="%s", skip=" FOR UPDATE SKIP LOCKED")
    with psycopg.connect(conninfo) as conn:
        held: list[int] = []
        while True:
            with conn.transaction():
                if held:
                    conn.execute("DELETE FROM delayed_jobs WHERE id = ANY(%s)", (held,))
                held = [row[0] for row in conn.execute(claim, (me, batch))]
            if not held:
                return


def _sqlite_loop(path: str, batch: int) -> None:
    me = f"raw pid:{os.getpid()}"
    claim = _CLAIM.format(now="strftime('%Y-%m-%d %H:%M:%f', 'now')", me="?", limit="?", skip="")
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    held: list[int] = []
    while True:
        conn.execute("BEGIN IMMEDIATE")
        if held:
            conn.execute(f"DELETE FROM delayed_jobs WHERE id IN ({','.join('?' * len(held))})", held)
        held = [row[0] for row in conn.execute(claim, (me, batch)).fetchall()]
        conn.execute("COMMIT")
        if not held:
            conn.close()
            return


class RawLoop:
    """The bare loop against ``engine``'s database (djctl's schema, already migrated)."""

    name = "raw"

    def __init__(self, engine, tmp: Path):
        self.engine = engine
        self.log = tmp / "raw.log"
        url = engine.url
        if engine.dialect.name == "sqlite":
            self.target = url.database
            self.loop = _sqlite_loop
        else:
            self.target = url.set(drivername="postgresql").render_as_string(hide_password=False)
            self.loop = _pg_loop

    def process(self, workers: int, n: int, batch: int = 10) -> float:
        """Seconds for ``workers`` forked loops to drain ``n`` rows, ``batch`` per claim."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM delayed_jobs")
        fill.insert_rows(self.engine, n, "ready")
        self.engine.dispose()
        elapsed = common.run_workers(workers, lambda: self.loop(self.target, batch), self.log)
        with self.engine.connect() as conn:
            left = conn.exec_driver_sql("SELECT COUNT(*) FROM delayed_jobs").scalar_one()
        if left:
            raise RuntimeError(f"raw loop left {left} rows")
        return elapsed
