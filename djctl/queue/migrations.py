"""Versioned schema changes, recorded in djctl's own version table.

Each migration is a function of a connection inside the upgrade's transaction. A
migration never changes once released: later schema changes are new migrations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Column, Connection, Dialect, Engine, Integer, MetaData, String, Table, func, inspect, select
from sqlalchemy.engine.mock import MockConnection

from djctl.clock import utcnow
from djctl.queue import limits_schema
from djctl.queue.schema import Timestamp, delayed_jobs, djctl_paused_queues, djctl_processes, djctl_task_results

version_metadata = MetaData()
schema_migrations = Table(
    "djctl_schema_migrations",
    version_metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(255), nullable=False),
    Column("applied_at", Timestamp, nullable=False),
)


class SchemaNotCurrent(RuntimeError):
    """djctl's tables are missing or older than this djctl; the message says what to run."""


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


def _name_the_default_queue(conn: Connection) -> None:
    # Jobs enqueued without a queue were stored with none; they are the default queue's,
    # and a worker started with --queues default must find them.
    conn.execute(delayed_jobs.update().where(delayed_jobs.c.queue.is_(None)).values(queue="default"))


def _create_djctl_task_results(conn: Connection) -> None:
    djctl_task_results.create(conn)


def _add_process_progress(conn: Connection) -> None:
    # A heartbeat-time copy of each process's running job's progress, for other hosts.
    # Migration 2 creates the table as declared now, progress included: only a table
    # created by an older djctl lacks it.
    if isinstance(conn, _Script):
        if any(s.startswith("CREATE TABLE djctl_processes") for s in conn.statements):
            return
    elif "progress" in {c["name"] for c in inspect(conn).get_columns("djctl_processes")}:
        return
    conn.exec_driver_sql("ALTER TABLE djctl_processes ADD COLUMN progress VARCHAR(255)")


def _create_djctl_paused_queues(conn: Connection) -> None:
    djctl_paused_queues.create(conn)


MIGRATIONS: list[Migration] = [
    Migration(1, "create delayed_jobs", _create_delayed_jobs),
    Migration(2, "create djctl_processes", _create_djctl_processes),
    Migration(3, "name the default queue", _name_the_default_queue),
    Migration(4, "create djctl_task_results", _create_djctl_task_results),
    Migration(5, "add djctl_processes.progress", _add_process_progress),
    Migration(6, "create djctl_paused_queues", _create_djctl_paused_queues),
    Migration(7, "concurrency limits, throttles and unique keys", limits_schema.add_limits),
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


class _Script(MockConnection):
    """A connection that runs nothing: it keeps each statement, compiled for its dialect."""

    def __init__(self, dialect: Dialect, fresh: bool):
        super().__init__(dialect, self._keep)
        self.statements: list[str] = []
        self.fresh = fresh
        """The script starts from an empty database: its tables are made as declared now."""

    def _keep(self, statement, parameters=None) -> None:
        compiled = statement.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True})
        self.statements.append(str(compiled).strip())

    def exec_driver_sql(self, sql: str, *_args) -> None:
        self.statements.append(sql.strip())


def script(dialect: Dialect, from_version: int) -> str:
    """The SQL :func:`upgrade` would run on a database at ``from_version``, for ``dialect``.

    Compiled from the migrations themselves, so it is what they execute, statement for
    statement (each ended by ``;``), without the locks that keep concurrent upgrades apart.
    Nothing is executed. Empty when ``from_version`` is already :data:`LATEST`.
    """
    pending = [m for m in MIGRATIONS if m.version > from_version]
    if not pending:
        return ""
    conn = _Script(dialect, fresh=from_version == 0)
    if from_version == 0:
        schema_migrations.create(conn)
    for migration in pending:
        conn.statements.append(f"-- migration {migration.version}: {migration.description}")
        migration.apply(conn)  # type: ignore[arg-type]  # the script records what a Connection runs
        conn.execute(schema_migrations.insert().values(
            version=migration.version, description=migration.description, applied_at=func.current_timestamp()))
    return "\n".join(s if s.startswith("--") else s + ";" for s in conn.statements) + "\n"

