"""Every line the supervisor wing shows a user: ps listings, scale and restart messages,
and the supervisor's log events in Heroku's words.

Pure functions of values; nothing here reads files, sockets or the clock (``now`` is
always passed in), so each format is tested once, here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

from djctl.daemon.formation import format_formation
from djctl.daemon.model import ProcessInfo, State

# -- supervisor events, as the log shows them after ``djctl[worker.1]:`` -----------------

def starting(command: str) -> str:
    return f"Starting process with command `{command}`"


def state_changed(old: State, new: State) -> str:
    return f"State changed from {old.value} to {new.value}"


def stopping(signal_name: str = "SIGTERM") -> str:
    return f"Stopping all processes with {signal_name}"


def exit_timeout(grace: float) -> str:
    return f"Error R12 (Exit timeout) -> At least one process failed to exit within {grace:g} seconds of SIGTERM"


def killing() -> str:
    return "Stopping remaining processes with SIGKILL"


def exited(status: int) -> str:
    return f"Process exited with status {status}"


def restarting_in(seconds: float) -> str:
    return f"Crashed again soon after starting; restarting in {seconds:g}s"


def restarting(reason: str | None = None) -> str:
    return "Restarting" if reason is None else f"Restarting ({reason})"


def released(count: int, worker: str) -> str:
    return f"Released {count} job{'s' if count != 1 else ''} held by {worker}"


def spawn_failed(error: str) -> str:
    return f"Could not start process: {error}"


# -- command output ----------------------------------------------------------------------

def scale_message(changed: Sequence[str], formation: Mapping[str, int]) -> str:
    """``Scaling worker processes... done, now running worker at 2.``"""
    names = list(changed) or list(formation)
    running = ", ".join(f"{name} at {formation.get(name, 0)}" for name in names)
    return f"Scaling {', '.join(names)} processes... done, now running {running}."


def restart_message(target: str | None, finished: bool = True, crashed: Sequence[str] = ()) -> str:
    """``Restarting worker processes... done`` (or ``... still going`` when the CLI gave up
    waiting, or ``... failed`` naming the processes that did not stay up)."""
    if target is None:
        what = "all processes"
    elif "." in target:
        what = f"{target} process"
    else:
        what = f"{target} processes"
    end = "done" if finished else "still restarting in the background (see djctl ps)"
    if crashed:
        end = f"failed: {', '.join(crashed)} did not stay up"
    return f"Restarting {what}... {end}"


def procfile_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """What a re-read Procfile changed: ``added mail``, ``removed clock``,
    ``worker now runs `djctl work -q a` `` (nothing changed: [])."""
    changes = [f"added {name}" for name in new if name not in old]
    changes += [f"removed {name}" for name in old if name not in new]
    changes += [f"{name} now runs `{new[name]}`" for name in new if name in old and old[name] != new[name]]
    return changes


def finishing(name: str, jobs: Sequence[tuple[int, str]], left: float) -> str:
    """What ``djctl down`` says while ``name`` still runs: ``worker.1 is finishing job 7
    (Mailer); up to 25s of the grace period left``."""
    if jobs:
        what = f"is finishing job {jobs[0][0]} ({jobs[0][1]})"
        if len(jobs) > 1:
            what += f" ({len(jobs) - 1} more claimed)"
    else:
        what = "is stopping"
    if left > 0:
        return f"{name} {what}; up to {left:.0f}s of the grace period left"
    return f"{name} {what}; the grace period is over, killing it"


def ago(seconds: float) -> str:
    """Heroku's rough age: ``~ 20s``, ``~ 3m``, ``~ 2h``, ``~ 4d``."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"~ {seconds // size}{unit}"
    return f"~ {seconds}s"


def stamp(when: datetime) -> str:
    """``2026/11/22 10:04:05 +0000``"""
    return when.astimezone(timezone.utc).strftime("%Y/%m/%d %H:%M:%S +0000")


def process_line(p: ProcessInfo, now: datetime) -> str:
    """``worker.1: up 2026/11/22 10:04:05 +0000 (~ 3m ago)``: an up process shows when
    it started, which is what every host's heartbeat records, so ``ps`` and ``ps
    --all-hosts`` show the same instant; any other state when it was entered."""
    when = p.started_at if p.state is State.UP and p.started_at is not None else p.since
    return f"{p.name}: {p.state.value} {stamp(when)} ({ago((now - when).total_seconds())} ago)"


def ps_text(
    processes: Sequence[ProcessInfo],
    types: Mapping[str, str],
    now: datetime,
    only: str | None = None,
) -> str:
    """The ``djctl ps`` listing: one ``=== type: command (n)`` block per type that has
    processes, processes in index order. ``only`` keeps one type."""
    blocks = []
    for type_name, command in types.items():
        if only is not None and type_name != only:
            continue
        mine = sorted((p for p in processes if p.type == type_name), key=_index)
        if not mine:
            continue
        lines = [f"=== {type_name}: {command} ({len(mine)})"]
        lines += [process_line(p, now) for p in mine]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def ps_all_hosts_text(processes: Sequence[ProcessInfo], now: datetime, stale_after: float) -> str:
    """``ps --all-hosts``: per host and type a ``=== host: type: command (n)`` block; a
    host whose heartbeat is older than ``stale_after`` seconds says so."""
    blocks = []
    hosts = sorted({p.host or "?" for p in processes})
    for host in hosts:
        on_host = [p for p in processes if (p.host or "?") == host]
        types: dict[str, str] = {}
        for p in sorted(on_host, key=lambda p: (p.type, _index(p))):
            types.setdefault(p.type, p.command)
        for type_name, command in types.items():
            mine = sorted((p for p in on_host if p.type == type_name), key=_index)
            lines = [f"=== {host}: {type_name}: {command} ({len(mine)})"]
            for p in mine:
                line = process_line(p, now)
                if p.heartbeat_at is not None:
                    silent = (now - p.heartbeat_at).total_seconds()
                    if silent > stale_after:
                        line += f" [no heartbeat for {ago(silent)[2:]}]"
                lines.append(line)
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def ps_json(processes: Sequence[ProcessInfo], only: str | None = None) -> str:
    """``ps --json``: a JSON list of process objects (see :meth:`ProcessInfo.as_dict`)."""
    return json.dumps([p.as_dict() for p in sorted(processes, key=_order) if only in (None, p.type)])


def formation_text(formation: Mapping[str, int]) -> str:
    """Bare ``djctl scale``: ``worker=2 mail=1``."""
    return format_formation(formation)


def already_running(pid: int | None) -> str:
    return f"djctl is already running (pid {pid if pid is not None else '?'})"


def started(pid: int, formation: Mapping[str, int]) -> str:
    return f"Starting djctl supervisor... done (pid {pid}), running {format_formation(formation) or 'nothing'}"


def nothing_to_run(formation: Mapping[str, int], elsewhere: Mapping[str, int]) -> str:
    """The warning of an ``up`` that starts no process: what runs, the saved counts of
    types the Procfile no longer names, and how to start one."""
    first = next(iter(formation), "worker")
    line = f"warning: running no processes ({format_formation(formation) or 'no types'})"
    kept = {name: count for name, count in elsewhere.items() if count > 0}
    if kept:
        line += f"; the saved formation also has {format_formation(kept)}, not in the Procfile"
    return line + f"; start some with djctl scale {first}=1"


def started_but_crashed(pid: int, names: Sequence[str]) -> str:
    return f"Started djctl supervisor (pid {pid}), but {', '.join(names)} did not stay up"


def crashed_at_once(names: Sequence[str]) -> str:
    """Why ``djctl up`` failed: processes that exited as soon as they started."""
    which = ", ".join(names)
    return (f"{which} exited soon after starting; fix the command in the Procfile, then djctl restart "
            f"(the supervisor keeps retrying; djctl down stops it)")


def not_running() -> str:
    return "djctl is not running; start it with djctl up"


# How many supervisors for other databases a "not running here" names.
_SHOWN = 3


def not_running_here(elsewhere: Sequence[tuple[int, str, bool]], command: str) -> str:
    """No supervisor here, but these (pid, directory, same database) run on this host:
    where, and the ``djctl -C DIR`` that reaches them."""
    same = [(pid, cwd) for pid, cwd, same_db in elsewhere if same_db]
    if same:
        where = ", ".join(f"{cwd} (pid {pid})" for pid, cwd in same)
        return (f"djctl is not running here, but a supervisor for this database runs in {where}; "
                f"use djctl -C {same[0][1]} {command}")
    if not elsewhere:
        return not_running()
    where = ", ".join(f"{cwd} (pid {pid})" for pid, cwd, _ in elsewhere[:_SHOWN])
    if len(elsewhere) > _SHOWN:
        where += f" and {len(elsewhere) - _SHOWN} more"
    return (f"djctl is not running here; supervisors for other databases run in {where} "
            f"(djctl -C DIR {command} reaches one); start one here with djctl up")


def _index(p: ProcessInfo) -> int:
    _, _, n = p.name.rpartition(".")
    return int(n) if n.isdigit() else 0


def _order(p: ProcessInfo) -> tuple:
    return (p.host or "", p.type, _index(p))
