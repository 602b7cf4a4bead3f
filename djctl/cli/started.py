"""What ``up`` and ``restart`` say about the processes they started: those that did not
stay up (with their own last lines, exit 1), and the warnings that a formation runs no
process or its workers have no app to run."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import click

from djctl import config
from djctl.cli import base as cli
from djctl.daemon import render
from djctl.daemon.client import ControlError, LogFilter, LogLine, NotRunning, SupervisorClient
from djctl.daemon.formation import FormationStore, StateFileError
from djctl.daemon.model import ProcessInfo, State

# How many of its own lines `up` shows of a process that did not stay up.
_LAST_LINES = 10


def fail_if_crashed(supervisor: SupervisorClient, crashed: list[str], since: datetime) -> None:
    """Each process that did not stay up, with its own last lines written after ``since``
    (not an earlier run's); then exit 1."""
    for name in crashed:
        click.echo(f"{name} did not stay up; its last lines:", err=True)
        lines = [line for line in supervisor.tail(_LAST_LINES * 10, LogFilter(proc=name, source="app"))
                 if (parsed := LogLine.parse(line)) is not None and parsed.at >= since]
        for line in lines[-_LAST_LINES:] or ["(it wrote nothing)"]:
            click.echo(f"  {line}", err=True)
    if crashed:
        raise cli.Failure(render.crashed_at_once(crashed))


def stayed_up(supervisor: SupervisorClient, names: list[str], up_check: float, deadline: float) -> list[str]:
    """Wait until each of ``names`` has stayed up ``up_check`` seconds or exited sooner;
    returns those that exited sooner (as ``up`` checks its processes)."""
    while time.monotonic() < deadline:
        try:
            reply = supervisor.request("ps")
        except NotRunning:
            return []
        except ControlError:
            time.sleep(0.05)  # busy for a moment: ask again
            continue
        bounced = [name for name in names if name in reply.get("bounced", [])]
        states = {p["name"]: ProcessInfo.from_dict(p) for p in reply["processes"]}
        now = datetime.now(timezone.utc)
        settled = [name for name in names if name in bounced or (
            name in states and states[name].state is State.UP
            and (now - states[name].since).total_seconds() >= up_check)]
        if len(settled) == len(names):
            return bounced
        time.sleep(0.1)
    return []


def warn_if_no_app(s: config.Settings, types: dict[str, str], formation: dict[str, int]) -> None:
    """Workers with no app configured may run no job: say so here, not only in the log.
    (A Procfile command that passes --app itself is taken at its word.)"""
    if s.app or s.allow:
        return
    running = [name for name, count in formation.items() if count > 0 and "--app" not in types.get(name, "")]
    if any("djctl" in types.get(name, "") and " work" in types.get(name, "") for name in running):
        click.echo("djctl: warning: no app configured, so workers may run no job's code and leave every job; "
                   "set app in [tool.djctl] of pyproject.toml, DJ_APP or --app, then djctl restart", err=True)


def warn_if_empty(supervisor: SupervisorClient, formation: dict[str, int]) -> None:
    if any(formation.values()):
        return
    try:
        saved = FormationStore(supervisor.formation_path).load() or {}
    except StateFileError:
        saved = {}
    elsewhere = {name: count for name, count in saved.items() if name not in formation}
    click.echo(f"djctl: {render.nothing_to_run(formation, elsewhere)}", err=True)
