"""``djctl jobs`` and ``djctl show``: find jobs, and read one whole."""

from __future__ import annotations

import json

import click

from djctl.cli.base import UsageFailure, connect, settings

# The queue modules (and so SQLAlchemy) are imported by the commands, not with the CLI.
_STATES = ["running", "ready", "scheduled", "failed"]
MAX_LIMIT = 10_000


def _text(name: str):
    def check(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise click.BadParameter(f"give a non-empty {name}, or leave the option out")
        return value.strip() if value is not None else None
    return check


@click.command()
@click.option("--queue", callback=_text("queue name"), help="Only this queue's jobs.")
@click.option("--state", type=click.Choice(_STATES), help="Only jobs in this state.")
@click.option("--class", "job_class", callback=_text("class name"),
              help="Only jobs whose class or function name contains NAME (not their arguments).")
@click.option("--search", callback=_text("search text"),
              help="Only jobs whose arguments or last error contain TEXT, or whose id it is.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True,
              help="At most this many jobs.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of job objects.")
@click.pass_context
def jobs(ctx: click.Context, queue: str | None, state: str | None, job_class: str | None, search: str | None,
         limit: int, as_json: bool) -> None:
    """List jobs: running, ready, scheduled and failed, with their queue, priority,
    attempts, run_at, worker and the first line of their last error."""
    from djctl import api
    from djctl.queue import lookup

    eng = connect(settings(ctx), create=False)
    states = (lookup.State(state),) if state else tuple(lookup.State)
    query = lookup.Search(queue, states, job_class or "", search or "", limit)
    with eng.connect().execution_options(sqlite_read=True) as conn:
        if queue is not None and not lookup.queue_exists(conn, queue):
            raise UsageFailure(f"no job is in queue {queue!r}: check the name (djctl stats lists the queues)")
        rows = lookup.find_jobs(conn, query, api.utc_naive(api.now()))
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows]))
    else:
        click.echo(lookup.render_jobs(rows))


@click.command()
@click.argument("job_id", metavar="ID", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def show(ctx: click.Context, job_id: int, as_json: bool) -> None:
    """One job whole: its class and arguments (read as JSON, never run), every column,
    the full traceback of its last failure."""
    from djctl import api
    from djctl.queue import lookup

    eng = connect(settings(ctx), create=False)
    with eng.connect().execution_options(sqlite_read=True) as conn:
        detail = lookup.show_job(conn, job_id, api.utc_naive(api.now()))
    if detail is None:
        raise UsageFailure(f"no job with id {job_id}: a job that completed is deleted (djctl jobs lists those left)")
    if as_json:
        click.echo(json.dumps(detail.as_dict(), default=str))
    else:
        click.echo(lookup.render_detail(detail))
