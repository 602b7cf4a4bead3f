"""Migration 7: the columns, indexes and tables of concurrency limits, throttles and
unique keys. Every queued job is kept as it was: the new columns are NULL (no limit)."""

from __future__ import annotations

from sqlalchemy import Connection, Index, inspect, text

from djctl.queue.schema import delayed_jobs, djctl_gates, djctl_throttle_starts

_NEW_COLUMNS = ("gate", "concurrency_limit", "throttle_key", "throttle_limit", "throttle_period_ms",
                "unique_key", "unique_while")

# The claim indexes change: gated jobs leave them, so the plain claim never walks past
# jobs that wait on a busy gate.
_REBUILT = {
    "postgresql": ("delayed_jobs_claim", "delayed_jobs_claim_queue"),
    "sqlite": ("delayed_jobs_claim", "delayed_jobs_claim_queue"),
    "mysql": ("delayed_jobs_claim_mysql",),
    "mariadb": ("delayed_jobs_claim_mysql",),
}
_NEW_INDEXES = ("delayed_jobs_gate", "delayed_jobs_unique_key")


def _index(name: str) -> Index:
    return next(i for i in delayed_jobs.indexes if i.name == name)


def add_limits(conn: Connection) -> None:
    """Add the limit columns (NULL for every job already queued), rebuild the claim
    indexes without gated jobs, add the gate and unique-key indexes and the gates' tables."""
    dialect = conn.dialect
    djctl_gates.create(conn)
    djctl_throttle_starts.create(conn)
    if _created_with_limits(conn):
        return  # migration 1 made delayed_jobs as declared now, limits and all
    for name in _NEW_COLUMNS:
        column = delayed_jobs.c[name]
        ddl = column.type.compile(dialect=dialect)
        conn.execute(text(f"ALTER TABLE delayed_jobs ADD COLUMN {name} {ddl}"))
    for name in _REBUILT.get(dialect.name, ()):
        on = " ON delayed_jobs" if dialect.name in ("mysql", "mariadb") else ""
        conn.execute(text(f"DROP INDEX {name}{on}"))
        _index(name).create(conn)
    for name in _NEW_INDEXES:
        _index(name).create(conn)


def _created_with_limits(conn: Connection) -> bool:
    fresh = getattr(conn, "fresh", None)  # `db upgrade --sql` says; it cannot look
    if fresh is not None:
        return bool(fresh)
    return "gate" in {c["name"] for c in inspect(conn).get_columns("delayed_jobs")}
