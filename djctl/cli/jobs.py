"""``djctl work | workoff | clear | retry | stats | db upgrade | demo | bench``: the job queue's commands."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from djctl.cli.base import Failure, UsageFailure, _first_line, check_supervisor_database, connect, import_app, settings
from djctl.daemon.paths import ensure_private_dir

if TYPE_CHECKING:
    from djctl.queue import admin

# The queue modules (and so SQLAlchemy) are imported by the commands that use them, so
# that `djctl --help` and the supervisor's commands start without them (issue 20).


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
    from djctl.worker.worker import Worker

    s = settings(ctx, app=worker_app, sleep_delay=sleep_delay, read_ahead=read_ahead,
                 max_run_time=max_run_time, max_attempts=max_attempts)
    import_app(s)
    connect(s)
    return Worker(queues=_queues(queues), min_priority=min_priority, max_priority=max_priority,
                  settings=s, **extra)


@click.command()
@_worker_options
@click.option("--exit-on-complete", is_flag=True, help="Exit when no job is ready.")
@click.pass_context
def work(ctx: click.Context, exit_on_complete: bool, **opts: Any) -> None:
    """Work off jobs until SIGTERM or SIGINT (rake jobs:work)."""
    worker = _make_worker(ctx, exit_on_complete=exit_on_complete, **opts)
    worker.start()


@click.command()
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
        if ok + failed == 0 or worker.stopping:
            break
    elapsed = max(time.monotonic() - started, 1e-9)
    count = total_ok + total_failed
    click.echo(f"{count} jobs processed at {count / elapsed:.4f} j/s, {total_failed} failed")


@click.command()
@click.option("--queue", help="Delete only this queue's jobs.")
@click.pass_context
def clear(ctx: click.Context, queue: str | None) -> None:
    """Delete jobs and recurring schedules (rake jobs:clear)."""
    from djctl.queue import admin

    eng = connect(settings(ctx))
    choice = admin.EVERY if queue is None else queue
    click.echo(admin.clear(eng, choice).sentence(choice))


@click.command()
@click.argument("ids", nargs=-1, type=int)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed job.")
@click.option("--queue", help="With --failed: only this queue.")
@click.pass_context
def retry(ctx: click.Context, ids: tuple[int, ...], all_failed: bool, queue: str | None) -> None:
    """Run jobs again now: the given IDs (failed, waiting for their next attempt, or recurring
    schedules), or every failed job. One ID refused (unknown, running, never run) and none is retried."""
    if bool(ids) == all_failed:
        raise UsageFailure("give job IDs or --failed (not both)")
    if queue is not None and not all_failed:
        raise UsageFailure("--queue goes with --failed")
    from djctl.queue import admin

    eng = connect(settings(ctx))
    if all_failed:
        outcome = admin.retry_failed(eng, admin.EVERY if queue is None else queue)
    else:
        outcome = admin.retry(eng, ids)
    if outcome.refused:
        raise UsageFailure(_refusal(outcome))
    n = len(outcome.done)
    click.echo(f"Retrying {n} job{'s' if n != 1 else ''}.")


def _refusal(outcome: admin.Outcome) -> str:
    """The one line for a refused retry: which ids, and why."""
    from djctl.queue import admin

    parts = []
    gone = outcome.refused_for(admin.Refusal.UNKNOWN, admin.Refusal.RUNNING)
    if gone:
        parts.append(f"no job to retry with id {', '.join(map(str, gone))} (unknown, or running now)")
    early = outcome.refused_for(admin.Refusal.NOT_FAILED)
    if early:
        ids = ", ".join(map(str, early))
        parts.append(f"job {ids} {'has' if len(early) == 1 else 'have'} not failed: nothing to retry "
                     "(a job waits for its run_at; delete it or let it run)")
    return "; ".join(parts)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per queue and priority.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Queue depth per queue and priority: ready, scheduled, running, failed; and which
    queues are paused."""
    from djctl import api
    from djctl.queue.stats import is_paused, left_unrun, paused_queues, queue_depth, render_depth, render_left

    s = settings(ctx)
    check_supervisor_database(s)
    eng = connect(s, create=False)
    with eng.connect().execution_options(sqlite_read=True) as conn:
        rows = queue_depth(conn, api.utc_naive(api.now()))
        left = left_unrun(conn)
        paused = paused_queues(conn)
    if as_json:
        click.echo(json.dumps([{**r.as_dict(), "paused": is_paused(paused, r.queue)} for r in rows]))
    else:
        click.echo(render_depth(rows, paused))
        if left:
            click.echo(render_left(left))


@click.group()
def db() -> None:
    """The delayed_jobs schema."""


@db.command()
@click.option("--sql", "as_sql", is_flag=True, help="Print the SQL it would run, and change nothing.")
@click.pass_context
def upgrade(ctx: click.Context, as_sql: bool) -> None:
    """Create or upgrade djctl's tables; running it again changes nothing."""
    from sqlalchemy.exc import DBAPIError

    from djctl.queue import engines as store
    from djctl.queue import migrations

    s = settings(ctx)
    if as_sql:
        click.echo(_upgrade_script(s.database_url), nl=False)
        return
    try:
        eng = store.engine_for(s.database_url)
        applied = migrations.upgrade(eng)
    except (DBAPIError, TimeoutError) as e:
        where = store.describe(store.normalize_url(s.database_url))
        raise Failure(f"cannot upgrade {where}: {_first_line(e)}") from None
    for m in applied:
        click.echo(f"Applied migration {m.version}: {m.description}")
    click.echo(f"Database is at version {migrations.LATEST}.")


def _upgrade_script(database_url: str) -> str:
    from sqlalchemy.exc import DBAPIError

    from djctl.queue import engines as store
    from djctl.queue import migrations

    url = store.normalize_url(database_url)
    sqlite_file = url.database if url.get_backend_name() == "sqlite" else None  # never None for SQLite
    try:
        if sqlite_file is not None and not os.path.exists(sqlite_file):
            # Connecting would create the file: a database that does not exist is at version 0.
            eng, version = store.make_engine(url), 0
        else:
            eng = store.engine_for(database_url)
            version = migrations.current_version(eng)
    except DBAPIError as e:
        raise Failure(f"cannot read the schema version of {store.describe(url)}: {_first_line(e)}") from None
    head = f"-- djctl db upgrade for {eng.dialect.name}: version {version} to {migrations.LATEST}\n"
    if version >= migrations.LATEST:
        return head + "-- nothing to run\n"
    return head + migrations.script(eng.dialect, version)


@click.command()
@click.option("--jobs", "count", default=200, show_default=True, type=click.IntRange(min=1), help="Sample jobs.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1, max=16), help="Worker processes.")
@click.option("--keep-running", is_flag=True, help="Leave the supervisor running when the console closes.")
@click.pass_context
def demo(ctx: click.Context, count: int, workers: int, keep_running: bool) -> None:
    """The whole of djctl on a database of its own (.djctl/demo/demo.sqlite3, removed at the
    end; djctl --database-url URL demo uses URL and deletes its sample jobs from it): sample
    jobs, a supervisor with workers (djctl up), and the console (djctl top) open on them."""
    from djctl import demo as demo_module
    from djctl.cli import supervisor as daemon_commands
    from djctl.queue import engines as store

    flags = ctx.find_root().obj
    app = ",".join(filter(None, [flags.get("app"), os.environ.get("DJ_APP"), "djctl.demo"]))
    flags["app"] = app  # the supervisor's workers must be allowed to run the demo jobs
    own = not flags.get("database_url")
    # A supervisor of its own too, beside (never instead of) the application's.
    flags["state_dir"] = str(settings(ctx).state_dir / "demo")
    if own:
        flags["database_url"] = f"sqlite:///{Path(flags['state_dir']) / 'demo.sqlite3'}"
    ensure_private_dir(Path(flags["state_dir"]))
    s = settings(ctx)
    eng = connect(s)
    click.echo(f"Enqueued {demo_module.enqueue_samples(count)} sample jobs into "
               f"{store.describe(store.normalize_url(s.database_url))} "
               "(some slow, some scheduled for later, some failing).")
    daemon_commands.start(ctx, (f"worker={workers}",), types=dict(demo_module.TYPES))
    try:
        if sys.stdin.isatty() and sys.stdout.isatty():
            import threading

            from djctl.tui.app import run_console

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
            env = f"DJ_STATE_DIR={flags['state_dir']}"
            click.echo(f"The demo's supervisor keeps running: {env} djctl ps (or logs -t, top); "
                       f"{env} djctl down stops it.")
        else:
            ctx.invoke(daemon_commands.down)
            click.echo(demo_module.clean_up(eng, own))
            if own:  # its log and saved formation too: nothing of the demo stays behind
                shutil.rmtree(flags["state_dir"], ignore_errors=True)


@click.command()
@click.option("--jobs", "count", default=5000, show_default=True, type=click.IntRange(min=1, max=1_000_000))
@click.pass_context
def bench(ctx: click.Context, count: int) -> None:
    """Measure this database: enqueue one by one and in bulk, and one worker's throughput,
    with no-op jobs on a queue of their own (the application's jobs are not touched)."""
    from djctl import benchmark
    from djctl.queue import engines as store

    s = settings(ctx, app=",".join(filter(None, [ctx.find_root().obj.get("app"), "djctl.benchmark"])))
    connect(s)
    click.echo(f"{store.describe(store.normalize_url(s.database_url))}, {count} no-op jobs:")
    benchmark.run(count, click.echo)
