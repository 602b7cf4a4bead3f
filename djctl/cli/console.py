"""``djctl top``: the click command that opens the console."""

from __future__ import annotations

import sys

import click

from djctl.cli.base import UsageFailure, connect, settings


@click.command()
@click.option("--refresh", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--read-only", is_flag=True, help="Look only: no key changes the queue or the formation.")
@click.pass_context
def top(ctx: click.Context, refresh: float, read_only: bool) -> None:
    """The operations console: processes, queues, throughput, failed jobs and the log, live."""
    s = settings(ctx)
    connect(s)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageFailure("djctl top needs a terminal; for a one-shot view use: djctl stats")
    from djctl.tui.app import run_console  # Textual loads only for the console

    run_console(s, refresh=refresh, read_only=read_only)
