"""``djctl up | down | scale | ps | restart``: thin calls into the supervisor wing.

Usage errors exit 2, other failures 1, each with one line on stderr (see cli.Failure).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import click

from djctl import clock, config
from djctl.cli import base as cli
from djctl.cli import started
from djctl.daemon import render
from djctl.daemon.client import (
    ControlError,
    NotRunning,
    StateDirError,
    SupervisorClient,
    ensure_state_dir,
)
from djctl.daemon.formation import (
    FormationStore,
    ProcfileError,
    ScaleError,
    StateFileError,
    load_process_types,
    parse_scale,
)
from djctl.daemon.model import ProcessInfo, State
from djctl.daemon.pidfile import AlreadyRunning, PidFile, PidFileError
from djctl.worker.identity import hostname, pid_alive

# After a stop request, how long `down` waits beyond the grace period.
_DOWN_MARGIN = 30.0
# How long `down` waits quietly before it says what the processes are finishing, and how
# often it says it again.
_DOWN_QUIET = 1.0
_DOWN_EVERY = 5.0
# Per process, how long `restart` waits beyond the grace period before it stops watching.
_RESTART_MARGIN = 30.0


def _setup(ctx: click.Context, create: bool = False) -> tuple[config.Settings, SupervisorClient]:
    """Settings and the supervisor's client; with ``create``, the state directory made
    (or checked) owner-only."""
    s = cli.settings(ctx)
    if create:
        try:
            ensure_state_dir(s.state_dir)
        except StateDirError as e:
            raise cli.Failure(str(e)) from None
    return s, SupervisorClient(s.state_dir)


def _types(cwd: Path) -> dict[str, str]:
    try:
        return load_process_types(cwd)
    except ProcfileError as e:
        raise cli.Failure(str(e)) from None


def _saved(supervisor: SupervisorClient, types: dict[str, str]) -> dict[str, int]:
    """The saved formation over ``types``; nothing saved: one of ``worker`` (or of the first type)."""
    try:
        saved = FormationStore(supervisor.formation_path).load()
    except StateFileError as e:
        raise cli.Failure(str(e)) from None
    if saved is None:
        first = "worker" if "worker" in types else next(iter(types))
        return {name: int(name == first) for name in types}
    return {name: saved.get(name, 0) for name in types}


def _running(supervisor: SupervisorClient) -> int | None:
    try:
        return PidFile(supervisor.pid_path).running()
    except PidFileError as e:
        raise cli.Failure(str(e)) from None


def _not_running(s: config.Settings, other_databases: bool = True) -> str:
    """Not running here, and where on this host supervisors run instead (those for
    other databases too, unless told not to: a SQLite file named relative to the app's
    directory is another database in another directory)."""
    from djctl.daemon.locate import supervisors

    command = click.get_current_context().info_name or "ps"
    found = [(f.pid, str(f.cwd), f.same_database) for f in supervisors(s.database_url)
             if other_databases or f.same_database]
    return render.not_running_here(found, command)


def _request(supervisor: SupervisorClient, cmd: str, **args) -> dict:
    try:
        reply = supervisor.request(cmd, **args)
    except NotRunning:
        raise cli.Failure(_not_running(config.current())) from None
    except ControlError as e:
        raise (cli.UsageFailure if e.usage else cli.Failure)(str(e)) from None
    cli.warn_if_other_database(config.current(), reply)
    return reply


@click.command()
@click.option("--formation", "formation_args", multiple=True, metavar="TYPE=N",
              help="Processes to run: worker=2, or \"worker=2 mail=1\" (else the saved formation, else worker=1).")
@click.option("--foreground", is_flag=True, help="Run the supervisor attached to this terminal (systemd, containers).")
@click.option("--reload", "reload_", is_flag=True, help="Restart processes one by one when *.py files here change.")
@click.option("--metrics", metavar="HOST:PORT",
              help="Serve /metrics, /healthz and /readyz here, e.g. 127.0.0.1:9187 (loopback unless "
                   "DJ_METRICS_REMOTE=1).")
@click.pass_context
def up(ctx: click.Context, formation_args: tuple[str, ...], foreground: bool, reload_: bool,
       metrics: str | None) -> None:
    """Start the supervisor and the formation; return once they are up."""
    start(ctx, formation_args, foreground, reload_, metrics=metrics)


def start(ctx: click.Context, formation_args: tuple[str, ...], foreground: bool = False, reload_: bool = False,
          types: dict[str, str] | None = None, metrics: str | None = None) -> None:
    """``djctl up``, running ``types`` (default: the Procfile's) — the demo runs its own."""
    from djctl.daemon.exporter import AddressError, parse_address
    from djctl.daemon.launch import LaunchError, run_supervisor, start_daemon
    from djctl.daemon.manager import Policy
    from djctl.daemon.supervisor import Plan

    s, supervisor = _setup(ctx, create=True)
    wanted = s.metrics if metrics is None else metrics
    try:
        address = parse_address(wanted, remote=s.metrics_remote) if wanted else None
    except AddressError as e:
        raise cli.UsageFailure(str(e)) from None
    policy = Policy.from_settings(s)
    cwd = Path.cwd()
    types = _types(cwd) if types is None else types
    pid = _running(supervisor)
    if pid is not None:
        if formation_args:
            raise cli.Failure(render.already_running(pid if pid > 0 else None) + "; change it with djctl scale")
        click.echo(render.already_running(pid if pid > 0 else None))
        return
    formation = _saved(supervisor, types)
    if formation_args:
        try:
            formation = parse_scale(list(formation_args), formation, list(types))
        except ScaleError as e:
            raise cli.UsageFailure(str(e)) from None
    cli.connect(s).dispose()  # the daemon closes inherited descriptors: no pooled connection among them
    flags = ctx.find_root().obj or {}
    extra_env = {var: flags[key] for key, var in (("database_url", "DJ_DATABASE_URL"), ("app", "DJ_APP"))
                 if flags.get(key)}
    umask = os.umask(0o077)
    os.umask(umask)
    plan = Plan(s, cwd, types, formation, policy, hostname(), extra_env, reload_, umask, address)
    since = datetime.now(timezone.utc)
    try:
        if foreground:
            def on_ready(processes: list[ProcessInfo]) -> None:
                crashed = [p.name for p in processes if p.state is State.CRASHED]
                click.echo(render.started_but_crashed(os.getpid(), crashed) if crashed
                           else render.started(os.getpid(), formation))
                started.warn_if_empty(supervisor, formation)
            run_supervisor(plan, lambda _pid: None, on_ready, echo=sys.stdout)
            return
        pid, processes = start_daemon(plan)
    except AlreadyRunning as e:
        click.echo(render.already_running(e.pid))
        return
    except (PidFileError, LaunchError) as e:
        raise cli.Failure(str(e)) from None
    except KeyboardInterrupt:
        raise cli.Failure("interrupted; the supervisor may still be starting (see djctl ps)") from None
    crashed = [p.name for p in processes if p.state is State.CRASHED]
    click.echo(render.started_but_crashed(pid, crashed) if crashed else render.started(pid, formation))
    started.warn_if_empty(supervisor, formation)
    started.warn_if_no_app(s, types, formation)
    started.fail_if_crashed(supervisor, crashed, since)


@click.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop the processes gracefully (SIGTERM, then SIGKILL after the grace period) and the supervisor."""
    s, supervisor = _setup(ctx)
    pid = _running(supervisor)
    if pid is None:
        found = _not_running(s, other_databases=False)
        click.echo("djctl is not running." if found == render.not_running() else found)
        return
    grace = s.grace_period
    try:
        reply = supervisor.request("stop")
        pid, grace = reply["pid"], reply.get("grace_period", grace)
    except NotRunning:
        if pid > 0:  # alive but without its socket: a signal asks the same
            os.kill(pid, signal.SIGTERM)
    except ControlError as e:
        raise cli.Failure(str(e)) from None
    click.echo(f"Stopping djctl supervisor (pid {pid})... ", nl=False)
    began = time.monotonic()
    deadline = began + grace + _DOWN_MARGIN
    next_word = began + _DOWN_QUIET
    spoke = False
    # The pid file is let go just before the process ends: wait for both.
    while _running(supervisor) is not None or (pid > 0 and pid_alive(pid)):
        now = time.monotonic()
        if now > deadline:
            click.echo("still stopping")
            raise cli.Failure(f"the supervisor (pid {pid}) has not stopped yet; see djctl logs")
        if now >= next_word:
            lines = _finishing(s, supervisor, grace - (now - began))
            if lines:
                if not spoke:
                    click.echo("")  # ends the "Stopping ..." line
                for line in lines:
                    click.echo(f"  {line}")
                spoke = True
            next_word = now + _DOWN_EVERY
        time.sleep(0.02)
    click.echo("done")


def _finishing(s: config.Settings, supervisor: SupervisorClient, left: float) -> list[str]:
    """One line per process still stopping: the job it is finishing and the grace left.
    Best effort: a supervisor or database that does not answer leaves nothing to say."""
    try:
        reply = supervisor.request("ps", timeout=2.0)
    except (NotRunning, ControlError, OSError, ValueError):
        return []
    processes = [ProcessInfo.from_dict(p) for p in reply["processes"]]
    stopping = [(p.name, p.pid) for p in processes if p.state is State.STOPPING and p.pid]
    if not stopping:
        return []
    try:
        from djctl.daemon.registry import jobs_in_hand

        held = jobs_in_hand(cli.connect(s, create=False), reply["supervisor"]["host"], [pid for _, pid in stopping])
    except Exception:  # noqa: BLE001 - the names are a courtesy; the wait goes on without them
        held = {}
    return [render.finishing(name, held.get(pid, []), left) for name, pid in stopping]


@click.command()
@click.argument("args", nargs=-1)
@click.pass_context
def scale(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Set how many processes of each type run: worker=2 mail=1, worker+1, worker-1.
    Without arguments, print the formation."""
    s, supervisor = _setup(ctx)
    running = _running(supervisor) is not None
    if not args:
        if running:
            formation = _request(supervisor, "ps")["formation"]
        else:
            formation = _saved(supervisor, _types(Path.cwd()))
        click.echo(render.formation_text(formation))
        return
    if running:
        reply = _request(supervisor, "scale", args=list(args))
        formation = reply["formation"]
        click.echo(render.scale_message(_named(args, formation), formation))
        return
    types = _types(Path.cwd())
    try:
        formation = parse_scale(list(args), _saved(supervisor, types), list(types))
    except ScaleError as e:
        raise cli.UsageFailure(str(e)) from None
    elsewhere = _not_running(s, other_databases=False)
    if elsewhere != render.not_running():
        # Saving here would scale nothing that runs: point at the supervisor that does.
        raise cli.Failure(f"{elsewhere}; nothing saved here")
    _setup(ctx, create=True)
    FormationStore(supervisor.formation_path).update(formation)
    click.echo(f"djctl is not running; saved {render.formation_text(formation)} for the next djctl up.")


@click.command()
@click.argument("type_name", metavar="[TYPE]", required=False)
@click.option("--json", "as_json", is_flag=True, help="A JSON list of processes.")
@click.option("--all-hosts", is_flag=True, help="Every host's processes, from the database.")
@click.pass_context
def ps(ctx: click.Context, type_name: str | None, as_json: bool, all_hosts: bool) -> None:
    """The processes and their states."""
    s, supervisor = _setup(ctx)
    now = clock.now()
    if all_hosts:
        from djctl.daemon.registry import list_processes

        processes = [p for p in list_processes(cli.connect(s, create=False)) if type_name in (None, p.type)]
        if as_json:
            click.echo(render.ps_json(processes))
        else:
            click.echo(render.ps_all_hosts_text(processes, now, s.heartbeat_timeout) or "No processes.")
        return
    reply = _request(supervisor, "ps")
    types = reply["types"]
    if type_name is not None and type_name not in types:
        raise cli.UsageFailure(f"unknown process type {type_name!r}; known types: {', '.join(types)}")
    processes = [ProcessInfo.from_dict(p) for p in reply["processes"]]
    if as_json:
        click.echo(render.ps_json(processes, type_name))
    else:
        click.echo(render.ps_text(processes, types, now, type_name) or "No processes running.")
        for line in _paused(s):
            click.echo(line)


def _paused(s: config.Settings) -> list[str]:
    """The paused queues, one line each, for ps to show under the processes; none when the
    database cannot be read (ps answers from the supervisor, and must still)."""
    from djctl.queue.stats import paused_lines, paused_queues

    try:
        with cli.connect(s, create=False).connect().execution_options(sqlite_read=True) as conn:
            return paused_lines(paused_queues(conn))
    except Exception:  # noqa: BLE001 - ps works without the database; so does its answer
        return []


@click.command()
@click.option("-p", "--type", "type_name", metavar="TYPE", help="Restart the processes of this type.")
@click.option("-d", "--process", "process", metavar="NAME", help="Restart this process (worker.1).")
@click.pass_context
def restart(ctx: click.Context, type_name: str | None, process: str | None) -> None:
    """Restart processes one by one, gracefully: all of them, a type, or one.

    The Procfile is read again first: restarted processes run its commands as they are
    now, types it adds start at their saved count and types it no longer names stop.
    Settings (DJ_*, [tool.djctl]) are the supervisor's own: change those with down + up."""
    if type_name and process:
        raise cli.UsageFailure("give -p TYPE or -d NAME, not both")
    s, supervisor = _setup(ctx)
    target = type_name or process
    since = datetime.now(timezone.utc)
    reply = _request(supervisor, "restart", target=target)
    names = reply["restarting"]
    for change in reply.get("procfile", []):
        click.echo(f"Procfile: {change}")
    deadline = time.monotonic() + len(names) * (s.grace_period + _RESTART_MARGIN)
    finished = False
    while time.monotonic() < deadline:
        try:
            reply = supervisor.request("ps")
        except NotRunning:
            break
        except ControlError:
            pass  # busy for a moment: ask again
        else:
            if not set(names) & set(reply.get("restarting", [])):
                finished = True
                break
        time.sleep(0.05)
    crashed = started.stayed_up(supervisor, names, s.up_check, time.monotonic() + s.up_check + s.up_after + 10) \
        if finished else []
    click.echo(render.restart_message(target, finished, crashed))
    started.fail_if_crashed(supervisor, crashed, since)


def _named(args: Iterable[str], formation: dict[str, int]) -> list[str]:
    """The types the scale arguments named, in their order (longest match: mail-out-1
    names mail-out)."""
    named: list[str] = []
    for token in (t for arg in args for t in arg.split()):
        matches = [t for t in formation if token.startswith(t) and token[len(t):len(t) + 1] in ("=", "+", "-")]
        if matches:
            best = max(matches, key=len)
            if best not in named:
                named.append(best)
    return named


COMMANDS = (up, down, scale, ps, restart)


def register(group: click.Group) -> None:
    """Add the supervisor's commands to the ``djctl`` group."""
    for command in COMMANDS:
        group.add_command(command)

