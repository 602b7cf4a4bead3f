"""Finding the supervisors that run on this host, wherever they were started: what
``djctl ps`` in the wrong directory tells a user instead of "not running".

The process table says which processes look like ``djctl up``; each one's working
directory and environment give its settings (as it loaded them), and its pid file's
lock proves it is the supervisor. Only this user's processes can be read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from djctl import config, dburl
from djctl.daemon.paths import Paths
from djctl.daemon.pidfile import PidFile, PidFileError


@dataclass(frozen=True)
class Found:
    """A supervisor running on this host: its pid, the directory it was started in, and
    whether it works on the database asked about."""

    pid: int
    cwd: Path
    same_database: bool


def supervisors(database_url: str, cwd: Path | None = None) -> list[Found]:
    """The supervisors of this user running on this host, those working on
    ``database_url`` (as seen from ``cwd``, default here) first; never raises for a
    process that vanishes or cannot be read."""
    import psutil

    here = Path.cwd() if cwd is None else Path(cwd)
    wanted = _identity(database_url, here)
    found = []
    for proc in psutil.process_iter(["pid", "uids", "cmdline"]):
        info = proc.info
        if info["uids"] is None or info["uids"].real != os.getuid() or not _looks_like_up(info["cmdline"] or []):
            continue
        try:
            their_cwd = Path(proc.cwd())
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        try:
            settings = config.load_settings(_flags(info["cmdline"]), env=env, cwd=their_cwd)
        except config.ConfigError:
            continue
        try:
            if PidFile(Paths(their_cwd / settings.state_dir).pid).running() != info["pid"]:
                continue
        except PidFileError:
            continue
        found.append(Found(info["pid"], their_cwd, _identity(settings.database_url, their_cwd) == wanted))
    return sorted(found, key=lambda f: (not f.same_database, str(f.cwd)))


def _looks_like_up(cmdline: list[str]) -> bool:
    return "up" in cmdline and any(Path(arg).name == "djctl" for arg in cmdline)


def _flags(cmdline: list[str]) -> dict[str, str]:
    """The global flags a supervisor was started with (``--database-url``, ``--app``)."""
    flags: dict[str, str] = {}
    for i, arg in enumerate(cmdline):
        for flag, key in (("--database-url", "database_url"), ("--app", "app")):
            if arg == flag and i + 1 < len(cmdline):
                flags[key] = cmdline[i + 1]
            elif arg.startswith(flag + "="):
                flags[key] = arg.split("=", 1)[1]
    return flags


def _identity(database_url: str, cwd: Path) -> str | None:
    """One string per database: a SQLite file by its absolute path (relative to ``cwd``),
    a server database by its URL without password."""
    try:
        return dburl.parse(database_url).identity(cwd)
    except config.ConfigError:
        return None
