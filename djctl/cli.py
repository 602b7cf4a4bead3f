"""``djctl``: each command a thin call into the core and the wings.

Usage errors exit 2, other failures 1; either way one line on stderr says what is wrong.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError

from . import api, config, doorbell, migrations, store
from .schema import delayed_jobs
from .stats import queue_depth, render_depth


class Failure(click.ClickException):
    """A command failed for a reason other than its usage: exit 1, one line."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"djctl: {self.format_message()}", err=True)


class UsageFailure(Failure):
    exit_code = 2


def settings(ctx: click.Context, **flags: Any) -> config.Settings:
    """Settings from the global flags and ``flags``, put in force for this process."""
    try:
        # A command's own option left unset (None) must not hide the global one (--app).
        given = {k: v for k, v in flags.items() if v is not None}
        s = config.load_settings({**ctx.find_root().obj, **given})
        store.normalize_url(s.database_url)
    except config.ConfigError as e:
        raise UsageFailure(str(e)) from None
    config.set_current(s)
    return s


def connect(s: config.Settings):
    """The engine, its schema current; a database that does not answer is one clear line."""
    try:
        eng = api.engine(s.database_url)
    except DBAPIError as e:
        url = store.describe(store.normalize_url(s.database_url))
        raise Failure(f"cannot connect to {url}: {_first_line(e)}") from None
    return eng


def _first_line(e: BaseException) -> str:
    msg = str(getattr(e, "orig", None) or e).strip()
    return msg.splitlines()[0] if msg else type(e).__name__


def import_app(s: config.Settings) -> None:
    """Import the application packages, so their jobs (and decorators) are known."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in s.app:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UsageFailure(f"cannot import application package {name!r} (--app / DJ_APP): {e}") from None


def _one_line(e: click.UsageError) -> click.ClickException:
    """click's usage block as one line: what is wrong, and where to read more."""
    if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        return e  # a bare `djctl`: the help is the answer
    where = e.ctx.command_path if e.ctx is not None else "djctl"
    return UsageFailure(f"{e.format_message()} (see '{where} --help')")


class Group(click.Group):
    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            raise _one_line(e) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DBAPIError as e:
            raise Failure(f"database error: {_first_line(e)}") from None
        except click.UsageError as e:
            raise _one_line(e) from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--database-url", envvar=None, help="Database URL (else DJ_DATABASE_URL, DATABASE_URL, [tool.djctl]).")
@click.option("--app", help="Application packages, comma-separated (else DJ_APP).")
@click.version_option(package_name="djctl")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, app: str | None) -> None:
    """delayed_job for Python: a job queue in your database, a supervisor and a console."""
    ctx.obj = {"database_url": database_url, "app": app}


def _queues(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [q.strip() for q in value.split(",") if q.strip()]
    if not names:
        raise click.BadParameter("name at least one queue")
    return names


def _worker_options(f):
    options = [
        click.option("--queues", "--queue", "queues", help="Work only these queues (comma-separated)."),
        click.option("--min-priority", type=int, help="Work only jobs with priority >= N."),
        click.option("--max-priority", type=int, help="Work only jobs with priority <= N."),
        click.option("--sleep-delay", type=click.FloatRange(min=0.01), help="Seconds between polls when idle."),
        click.option("--read-ahead", type=click.IntRange(min=1), help="Jobs claimed per round trip."),
        click.option("--max-run-time", type=click.FloatRange(min=0.01), help="Seconds before a job is stopped."),
        click.option("--max-attempts", type=click.IntRange(min=1), help="Attempts before a job is failed."),
        click.option("--app", "worker_app", help="Application packages, comma-separated."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _make_worker(ctx, queues, min_priority, max_priority, sleep_delay, read_ahead, max_run_time,
                 max_attempts, worker_app, **extra):
    from .worker import Worker

    s = settings(ctx, app=worker_app, sleep_delay=sleep_delay, read_ahead=read_ahead,
                 max_run_time=max_run_time, max_attempts=max_attempts)
    import_app(s)
    connect(s)
    return Worker(queues=_queues(queues), min_priority=min_priority, max_priority=max_priority,
                  settings=s, **extra)


@main.command()
@_worker_options
@click.option("--exit-on-complete", is_flag=True, help="Exit when no job is ready.")
@click.pass_context
def work(ctx: click.Context, exit_on_complete: bool, **opts: Any) -> None:
    """Work off jobs until SIGTERM or SIGINT (rake jobs:work)."""
    worker = _make_worker(ctx, exit_on_complete=exit_on_complete, **opts)
    worker.start()


@main.command()
@_worker_options
@click.pass_context
def workoff(ctx: click.Context, **opts: Any) -> None:
    """Work off every ready job, then exit (rake jobs:workoff)."""
    worker = _make_worker(ctx, **opts)
    started = time.monotonic()
    total_ok = total_failed = 0
    while True:
        ok, failed = worker.work_off(num=10_000)
        total_ok += ok
        total_failed += failed
        if ok + failed == 0 or worker._stop:
            break
    elapsed = max(time.monotonic() - started, 1e-9)
    count = total_ok + total_failed
    click.echo(f"{count} jobs processed at {count / elapsed:.4f} j/s, {total_failed} failed")


@main.command()
@click.option("--queue", help="Delete only this queue's jobs.")
@click.pass_context
def clear(ctx: click.Context, queue: str | None) -> None:
    """Delete jobs (rake jobs:clear)."""
    eng = connect(settings(ctx))
    stmt = delete(delayed_jobs)
    if queue is not None:
        stmt = stmt.where(delayed_jobs.c.queue == queue)
    with eng.begin() as conn:
        n = conn.execute(stmt).rowcount
    click.echo(f"Deleted {n} job{'s' if n != 1 else ''}{f' from queue {queue}' if queue else ''}.")


@main.command()
@click.argument("ids", nargs=-1, type=int)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed job.")
@click.option("--queue", help="With --failed: only this queue.")
@click.pass_context
def retry(ctx: click.Context, ids: tuple[int, ...], all_failed: bool, queue: str | None) -> None:
    """Run jobs again now: the given IDs, or every failed job."""
    if bool(ids) == all_failed:
        raise UsageFailure("give job IDs or --failed (not both)")
    if queue is not None and not all_failed:
        raise UsageFailure("--queue goes with --failed")
    s = settings(ctx)
    eng = connect(s)
    now = api.utc_naive(api.now())
    t = delayed_jobs.c
    values = dict(failed_at=None, attempts=0, run_at=now, locked_at=None, locked_by=None, updated_at=now)
    with eng.begin() as conn:
        if all_failed:
            stmt = update(delayed_jobs).where(t.failed_at.is_not(None))
            if queue is not None:
                stmt = stmt.where(t.queue == queue)
            n = conn.execute(stmt.values(**values)).rowcount
        else:
            found = set(conn.scalars(select(t.id).where(t.id.in_(ids), t.locked_at.is_(None) | t.failed_at.is_not(None))))
            missing = sorted(set(ids) - found)
            if missing:
                raise UsageFailure(f"no job to retry with id {', '.join(map(str, missing))} (unknown, or running now)")
            n = conn.execute(update(delayed_jobs).where(t.id.in_(ids)).values(**values)).rowcount
    doorbell.ring_for(s.database_url)
    click.echo(f"Retrying {n} job{'s' if n != 1 else ''}.")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per queue and priority.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Queue depth per queue and priority: ready, scheduled, running, failed."""
    eng = connect(settings(ctx))
    with eng.connect().execution_options(sqlite_read=True) as conn:
        rows = queue_depth(conn, api.utc_naive(api.now()))
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows]))
    else:
        click.echo(render_depth(rows))


@main.group()
def db() -> None:
    """The delayed_jobs schema."""


@db.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Create or upgrade djctl's tables; running it again changes nothing."""
    s = settings(ctx)
    try:
        eng = store.engine_for(s.database_url)
        applied = migrations.upgrade(eng)
    except (DBAPIError, TimeoutError) as e:
        raise Failure(f"cannot upgrade {store.describe(store.normalize_url(s.database_url))}: {_first_line(e)}") from None
    for m in applied:
        click.echo(f"Applied migration {m.version}: {m.description}")
    click.echo(f"Database is at version {migrations.LATEST}.")


@main.command()
@click.option("--jobs", "count", default=200, show_default=True, type=click.IntRange(min=1), help="Sample jobs.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1, max=16), help="Worker processes.")
@click.option("--keep-running", is_flag=True, help="Leave the supervisor running when the console closes.")
@click.pass_context
def demo(ctx: click.Context, count: int, workers: int, keep_running: bool) -> None:
    """The whole of djctl on the configured database (SQLite by default): sample jobs, a supervisor
    with workers (djctl up), and the console (djctl top) open on them."""
    from . import demo as demo_module
    from .daemon import commands as daemon_commands

    app = ",".join(filter(None, [ctx.find_root().obj.get("app"), os.environ.get("DJ_APP"), "djctl.demo"]))
    ctx.find_root().obj["app"] = app  # the supervisor's workers must be allowed to run the demo jobs
    s = settings(ctx)
    connect(s)
    click.echo(f"Enqueued {demo_module.enqueue_samples(count)} sample jobs "
               "(some slow, some scheduled for later, some failing).")
    ctx.invoke(daemon_commands.up, formation_args=(f"worker={workers}",), foreground=False, reload_=False)
    try:
        if sys.stdin.isatty() and sys.stdout.isatty():
            import threading

            from .tui.app import run_console

            stop = threading.Event()
            threading.Thread(target=demo_module.feed, args=(stop,), daemon=True).start()
            try:
                run_console(s)
            finally:
                stop.set()
        else:
            click.echo("No terminal here, so no console: watching the queue drain instead (djctl top shows it).")
            demo_module.watch(click.echo)
    finally:
        if keep_running:
            click.echo("The supervisor keeps running: djctl ps, djctl logs -t, djctl top; djctl down stops it.")
        else:
            ctx.invoke(daemon_commands.down)


@main.command()
@click.option("--jobs", "count", default=5000, show_default=True, type=click.IntRange(min=1, max=1_000_000))
@click.pass_context
def bench(ctx: click.Context, count: int) -> None:
    """Measure this database: enqueue one by one and in bulk, and one worker's throughput,
    with no-op jobs on a queue of their own (the application's jobs are not touched)."""
    from . import benchmark

    s = settings(ctx, app=",".join(filter(None, [ctx.find_root().obj.get("app"), "djctl.benchmark"])))
    connect(s)
    click.echo(f"{store.describe(store.normalize_url(s.database_url))}, {count} no-op jobs:")
    benchmark.run(count, click.echo)


@main.group()
def systemd() -> None:
    """Run the supervisor as a systemd service."""


@systemd.command("install")
@click.option("--user", "user_unit", is_flag=True, help="A user unit (~/.config/systemd/user) instead of a system one.")
@click.option("--dry-run", is_flag=True, help="Print the unit and the commands; write nothing.")
@click.option("--working-directory", type=click.Path(path_type=Path), help="The application's directory.")
@click.option("--env-file", type=click.Path(path_type=Path), help="An EnvironmentFile for the service.")
def systemd_install(user_unit: bool, dry_run: bool, working_directory: Path | None, env_file: Path | None) -> None:
    """Write the unit, reload systemd and enable it (or say what to run)."""
    from .daemon import systemd as unit

    sys.exit(unit.systemd_install(user_unit, dry_run, working_directory, env_file, click.echo))


@systemd.command("uninstall")
@click.option("--user", "user_unit", is_flag=True, help="The user unit.")
@click.option("--dry-run", is_flag=True, help="Print what would be done.")
def systemd_uninstall(user_unit: bool, dry_run: bool) -> None:
    """Disable and remove the unit."""
    from .daemon import systemd as unit

    sys.exit(unit.systemd_uninstall(user_unit, dry_run, click.echo))

from . import schedule_commands  # noqa: E402 - it builds on the helpers above

main.add_command(schedule_commands.schedules)
main.add_command(schedule_commands.unschedule)

from .tui import commands as tui_commands  # noqa: E402 - it builds on the helpers above
main.add_command(tui_commands.top)

from .daemon import commands as daemon_commands  # noqa: E402 - the supervisor wing: up, down, scale, ps, restart, logs
daemon_commands.register(main)
