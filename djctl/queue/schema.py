"""The tables djctl keeps in the application's database (SQLAlchemy Core), and nothing else."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql

metadata = MetaData()

# Microseconds everywhere: MySQL's DATETIME would otherwise round them away, and
# ordering by run_at must match the order jobs were enqueued.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# MySQL's TEXT stops at 64 KiB; a handler or a traceback may be longer.
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")

_open = text("failed_at IS NULL AND locked_at IS NULL AND gate IS NULL")
_gated = text("gate IS NOT NULL AND failed_at IS NULL")
_unique = text("unique_key IS NOT NULL")
_locked = text("locked_by IS NOT NULL")
_scheduled = text("schedule_key IS NOT NULL")

delayed_jobs = Table(
    "delayed_jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("handler", LongText, nullable=False),
    Column("last_error", LongText),
    Column("run_at", Timestamp, nullable=False),
    Column("locked_at", Timestamp),
    Column("locked_by", String(255)),
    Column("failed_at", Timestamp),
    Column("queue", String(255)),
    Column("reoccur_in", Integer),
    Column("cron", String(255)),
    Column("last_run_at", Timestamp),
    Column("schedule_key", String(255)),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    # Limits (see queue/gates.py): a job with a gate is claimed only through its gate,
    # "concurrency:<key>" (at most concurrency_limit held at once) or "throttle:<key>"
    # (at most throttle_limit starts per throttle_period_ms). unique_key is held while
    # the job is queued (unique_while "queued") or until it ends ("running").
    Column("gate", String(255)),
    Column("concurrency_limit", Integer),
    Column("throttle_key", String(255)),
    Column("throttle_limit", Integer),
    Column("throttle_period_ms", BigInteger),
    Column("unique_key", String(255)),
    Column("unique_while", String(16)),
    # The claim walks this index in order and stops after read_ahead rows; on
    # PostgreSQL and SQLite it holds only claimable rows, so failed, running and
    # finished rows never slow it down. MySQL has no partial indexes: there the
    # leading IS NULL columns serve the same purpose.
    Index(
        "delayed_jobs_claim",
        "priority",
        "run_at",
        postgresql_where=_open,
        sqlite_where=_open,
    ).ddl_if(dialect=("postgresql", "sqlite")),  # type: ignore[arg-type]  # a tuple of names is documented; the stub says str
    Index(
        "delayed_jobs_claim_mysql",
        "failed_at",
        "locked_at",
        "gate",
        "priority",
        "run_at",
    ).ddl_if(dialect=("mysql", "mariadb")),  # type: ignore[arg-type]  # a tuple of names is documented; the stub says str
    Index(
        "delayed_jobs_claim_queue",
        "queue",
        "priority",
        "run_at",
        postgresql_where=_open,
        sqlite_where=_open,
    ).ddl_if(dialect=("postgresql", "sqlite")),  # type: ignore[arg-type]  # a tuple of names is documented; the stub says str
    # Counting per queue and priority (stats, the console) reads only this index.
    Index("delayed_jobs_depth", "queue", "priority", "failed_at", "locked_at", "run_at"),
    # Gated jobs, per gate: its waiting jobs in claim order and how many it holds. Only
    # gated rows where partial indexes exist, so keyless jobs never maintain it.
    Index("delayed_jobs_gate", "gate", "locked_at", "priority", "run_at",
          postgresql_where=_gated, sqlite_where=_gated),
    # A second enqueue of a unique key finds the first by this constraint, never by a
    # read-then-write race.
    Index("delayed_jobs_unique_key", "unique_key", unique=True,
          postgresql_where=_unique, sqlite_where=_unique),
    # Few rows are locked and fewer are schedules: where partial indexes exist these
    # hold only those rows, so enqueues and completions do not maintain them for every
    # job, and PostgreSQL's planner is not tempted to delete through them.
    Index("delayed_jobs_locked_by", "locked_by", postgresql_where=_locked, sqlite_where=_locked),
    Index("delayed_jobs_schedule_key", "schedule_key", unique=True,
          postgresql_where=_scheduled, sqlite_where=_scheduled),
    # A job's id is never given to another job, as with PostgreSQL's sequence and
    # MySQL's AUTO_INCREMENT: without AUTOINCREMENT SQLite reuses the highest id once
    # its row is deleted, and a worker's journal, the log or an operator's `retry 214`
    # would then name a different job.
    sqlite_autoincrement=True,
)

# One row per gate ever used (tiny): the claim locks a gate's row while it counts what
# the gate holds and claims, so two workers never both take its last slot.
djctl_gates = Table(
    "djctl_gates",
    metadata,
    Column("name", String(255), primary_key=True),
)

# The starts of throttled jobs within their period: a throttle admits a start when fewer
# than its limit fall within the period before it. Older rows are deleted as it goes.
djctl_throttle_starts = Table(
    "djctl_throttle_starts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Index("djctl_throttle_starts_name", "name", "started_at"),
)

# One row per supervised process, written on every heartbeat of its supervisor. The
# console lists every host's processes from it, and a supervisor whose peers stop
# heartbeating releases the claims of their processes.
djctl_processes = Table(
    "djctl_processes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer),
    Column("name", String(64), nullable=False),
    Column("type", String(64), nullable=False),
    Column("supervisor_pid", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("command", LongText, nullable=False),
    Column("started_at", Timestamp),
    Column("heartbeat_at", Timestamp, nullable=False),
    # The running job's last djctl.progress, as JSON ({"job_id", "fraction", "message"}),
    # written with the heartbeat: other hosts' consoles read it here.
    Column("progress", String(255)),
    UniqueConstraint("host", "name", name="djctl_processes_host_name"),
    Index("djctl_processes_heartbeat", "heartbeat_at"),
)

# One row per Django task (djctl.contrib.django): what Django's TaskResult reports,
# kept after the job's own row is deleted on success, until it is pruned. Plain djctl
# jobs have no row here.
djctl_task_results = Table(
    "djctl_task_results",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("job_id", BigInteger),
    Column("task_path", String(255), nullable=False),
    Column("backend", String(255), nullable=False),
    Column("queue_name", String(255), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("run_after", Timestamp),
    Column("arguments", LongText, nullable=False),
    Column("status", String(16), nullable=False),
    Column("enqueued_at", Timestamp, nullable=False),
    Column("started_at", Timestamp),
    Column("last_attempted_at", Timestamp),
    Column("finished_at", Timestamp),
    Column("errors", LongText, nullable=False),
    Column("worker_ids", LongText, nullable=False),
    Column("return_value", LongText),
    # Pruning deletes finished results older than the retention: it reads only this index.
    Index("djctl_task_results_finished", "finished_at"),
)

# One row per paused queue (``djctl pause``): no worker on any host claims a job of a
# queue named here, and the row ``*`` pauses every queue. Kept in the database so that
# a pause reaches every host's workers at their next claim and outlives restarts.
djctl_paused_queues = Table(
    "djctl_paused_queues",
    metadata,
    Column("queue", String(255), primary_key=True),
    Column("paused_at", Timestamp, nullable=False),
    Column("paused_by", String(255), nullable=False),
)
