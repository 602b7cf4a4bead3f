"""``djctl schedules`` and ``djctl unschedule KEY``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

import click

from djctl import config
from djctl.cli.base import Failure, connect, settings

if TYPE_CHECKING:  # djctl.schedules (SQLAlchemy, croniter) loads when a command runs
    from djctl.schedules import ScheduleInfo

_HEADER = ("key", "job", "schedule", "queue", "priority", "next run (UTC)", "last run (UTC)", "last error")


def render_schedules(rows: list[ScheduleInfo]) -> str:
    """The ``djctl schedules`` table: one schedule a line, the last error's first line only."""
    body = [
        (
            s.key,
            s.job,
            s.describe(),
            s.queue if s.queue is not None else config.current().default_queue,
            str(s.priority),
            "running now" if s.running else _when(s.next_run),
            _when(s.last_run_at) if s.last_run_at is not None else "never",
            _first_line(s.last_error),
        )
        for s in rows
    ]
    if not body:
        return "(no schedules)"
    widths = [max(len(r[i]) for r in [_HEADER, *body]) for i in range(len(_HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [_HEADER, *body])


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _as_dict(s: ScheduleInfo) -> dict:
    return {
        "key": s.key,
        "id": s.id,
        "job": s.job,
        "every": int(s.every.total_seconds()) if s.every is not None else None,
        "cron": s.cron,
        "tz": s.tz,
        "queue": s.queue,
        "priority": s.priority,
        "next_run": s.next_run.isoformat(),
        "running": s.running,
        "last_run_at": s.last_run_at.isoformat() if s.last_run_at is not None else None,
        "last_error": s.last_error,
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON list, one object per schedule.")
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """List recurring jobs with their next and last run."""
    from djctl.schedules import schedules as list_schedules

    eng = connect(settings(ctx))
    with eng.connect().execution_options(sqlite_read=True) as conn:
        rows = list_schedules(conn)
    click.echo(json.dumps([_as_dict(s) for s in rows]) if as_json else render_schedules(rows))


@click.command()
@click.argument("key")
@click.pass_context
def unschedule(ctx: click.Context, key: str) -> None:
    """Delete the recurring job KEY (see djctl schedules). A run in progress finishes."""
    from djctl.schedules import unschedule as delete_schedule

    connect(settings(ctx))
    if not delete_schedule(key):
        raise Failure(f"no schedule with key {key!r}; djctl schedules lists them")
    click.echo(f"Unscheduled {key}.")
