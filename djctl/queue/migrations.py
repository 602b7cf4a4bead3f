"""Versioned schema changes, recorded in djctl's own version table.

Each migration is a function of a connection inside the upgrade's transaction. A
migration never changes once released: later schema changes are new migrations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, inspect, select

from djctl.clock import utcnow
from djctl.queue.schema import Timestamp, delayed_jobs, djctl_processes

version_metadata = MetaData()
schema_migrations = Table(
    "djctl_schema_migrations",
    version_metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(255), nullable=False),
    Column("applied_at", Timestamp, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_delayed_jobs(conn: Connection) -> None:
    delayed_jobs.create(conn)
    if conn.dialect.name == "postgresql":
        # Idle workers LISTEN on this channel: an enqueue, a retry or a reschedule
        # wakes them at once instead of at their next poll.
        conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION djctl_notify_jobs() RETURNS trigger AS $$ "
            "BEGIN PERFORM pg_notify('djctl_jobs', ''); RETURN NULL; END $$ LANGUAGE plpgsql"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER delayed_jobs_notify AFTER INSERT OR UPDATE OF run_at ON delayed_jobs "
            "FOR EACH STATEMENT EXECUTE FUNCTION djctl_notify_jobs()"
        )


def _create_djctl_processes(conn: Connection) -> None:
    djctl_processes.create(conn)


MIGRATIONS: list[Migration] = [
    Migration(1, "create delayed_jobs", _create_delayed_jobs),
    Migration(2, "create djctl_processes", _create_djctl_processes),
]

LATEST = MIGRATIONS[-1].version


def _applied(conn: Connection) -> set[int]:
    if not inspect(conn).has_table(schema_migrations.name):
        return set()
    return set(conn.scalars(select(schema_migrations.c.version)))


def current_version(engine: Engine) -> int:
    """The highest applied migration, 0 for an empty database."""
    with engine.connect().execution_options(sqlite_read=True) as conn:
        return max(_applied(conn), default=0)


def upgrade(engine: Engine) -> list[Migration]:
    """Apply every migration not yet applied; returns those it applied. Safe to run concurrently."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        return _upgrade(engine)
    # DDL commits implicitly on MySQL, so no transaction can hold the others back: a
    # named lock, held on a connection of its own until the versions are committed.
    with engine.connect() as lock:
        if lock.exec_driver_sql("SELECT GET_LOCK('djctl_schema_migrations', 60)").scalar() != 1:
            raise TimeoutError("another djctl db upgrade held the migration lock for 60 s")
        try:
            return _upgrade(engine)
        finally:
            lock.exec_driver_sql("SELECT RELEASE_LOCK('djctl_schema_migrations')")


def _upgrade(engine: Engine) -> list[Migration]:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7715021)")
        schema_migrations.create(conn, checkfirst=True)
        done = _applied(conn)
        applied = []
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            migration.apply(conn)
            conn.execute(
                schema_migrations.insert().values(
                    version=migration.version,
                    description=migration.description,
                    applied_at=utcnow(),
                )
            )
            applied.append(migration)
        return applied
