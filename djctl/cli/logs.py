"""``djctl logs``: the supervisor's log, process output and supervisor events, Heroku's
format or (``--json``) one JSON object a line."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

import click

from djctl.cli import base as cli
from djctl.daemon.client import LogFilter, SupervisorClient


@click.command()
@click.option("-n", "--num", "num", type=click.IntRange(min=0), default=100, show_default=True,
              help="How many lines to show.")
@click.option("-t", "--tail", "follow_", is_flag=True, help="Keep printing lines as they are written.")
@click.option("-p", "--ps", "proc", metavar="TYPE|NAME", help="Only this type (worker) or process (worker.1).")
@click.option("-d", "--dyno", "process", metavar="NAME", help="Only this process (worker.1).")
@click.option("-s", "--source", type=click.Choice(["app", "djctl"]),
              help="Only process output (app) or supervisor events (djctl).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object a line: ts, source, process, level, message (and a job event's fields).")
@click.pass_context
def logs(ctx: click.Context, num: int, follow_: bool, proc: str | None, process: str | None,
         source: str | None, as_json: bool) -> None:
    """Print the log: process output and supervisor events, Heroku's format (or JSON lines)."""
    if proc and process and proc != process:
        raise cli.UsageFailure("give -p or -d, not both")
    try:
        flt = LogFilter(proc=proc or process, source=source)
    except ValueError as e:
        raise cli.UsageFailure(str(e)) from None
    supervisor = SupervisorClient(cli.settings(ctx).state_dir)
    fmt = "json" if as_json else "text"
    try:
        if follow_:
            _print(supervisor.follow(flt, num, fmt=fmt), flush_each=True)
        else:
            _print(supervisor.tail(num, flt, fmt=fmt), flush_each=False)
    except FileNotFoundError as e:
        raise cli.Failure(str(e)) from None
    except KeyboardInterrupt:
        pass


def _print(lines: Iterable[str], flush_each: bool) -> None:
    """Write lines to stdout; a reader that went away (``| head``) ends us quietly."""
    out = sys.stdout
    try:
        for line in lines:
            out.write(line + "\n")
            if flush_each:
                out.flush()
        out.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush cannot complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        os.close(devnull)
        sys.exit(0)
