"""The one door into a running supervisor for the command line and the console: its
control requests, where its log and events file are, and reading them.

Everything a front end knows of the supervisor's files and socket comes from here, so
the supervisor's layout on disk can change without touching a front end.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from djctl.daemon import control
from djctl.daemon.logs import events as job_events
from djctl.daemon.logs import reader
from djctl.daemon.logs.events import COMPLETED, OUTCOMES
from djctl.daemon.logs.format import SOURCES, LogFilter, LogLine
from djctl.daemon.paths import Paths, StateDirError, ensure_private_dir

NotRunning = control.NotRunning
ControlError = control.ControlError

__all__ = ["COMPLETED", "OUTCOMES", "ControlError", "LogFilter", "LogLine", "NotRunning", "SOURCES", "StateDirError",
           "SupervisorClient", "ensure_state_dir", "follow_events", "follow_log"]


def ensure_state_dir(state_dir: Path) -> Path:
    """Create the supervisor's state directory owner-only (or check it); raises
    StateDirError with one line to show."""
    return ensure_private_dir(state_dir)


def follow_log(path: Path, flt: LogFilter = LogFilter(), n: int = 0, stop: threading.Event | None = None,
               poll: float = 0.1, fmt: str = "text") -> Iterator[str]:
    """The last ``n`` lines of the log at ``path`` (:attr:`SupervisorClient.log_path`)
    through ``flt``, then each new one as it is written, across rotations, until
    ``stop`` is set, as ``fmt`` ("text": Heroku's lines; "json": one object a line)
    whatever the format the log is written in; FileNotFoundError (one line) at once
    when there is no log yet."""
    return reader.follow(Path(path), flt, n, stop, poll, fmt)


def follow_events(path: Path, n: int = 0, stop: threading.Event | None = None,
                  poll: float = 0.1) -> Iterator[dict[str, Any]]:
    """The last ``n`` job outcomes in the events file at ``path``
    (:attr:`SupervisorClient.events_path`), then each new one until ``stop`` is set,
    as dicts; lines that are not events are skipped. FileNotFoundError at once when
    there is no events file yet."""
    return _events(reader.follow(Path(path), LogFilter(), n, stop, poll))


def _events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        event = job_events.parse(line)
        if event is not None:
            yield event


class SupervisorClient:
    """The supervisor whose state lives in ``state_dir`` (it may not be running)."""

    def __init__(self, state_dir: Path, timeout: float = 30.0) -> None:
        self.paths = Paths(Path(state_dir))
        self.timeout = timeout

    @property
    def state_dir(self) -> Path:
        return self.paths.state_dir

    @property
    def log_path(self) -> Path:
        """Where the supervisor writes its log."""
        return self.paths.log

    @property
    def events_path(self) -> Path:
        """Where the supervisor writes the job outcomes its processes report."""
        return self.paths.events

    @property
    def pid_path(self) -> Path:
        return self.paths.pid

    @property
    def formation_path(self) -> Path:
        return self.paths.formation

    def request(self, cmd: str, timeout: float | None = None, **args: Any) -> dict:
        """Send one control request and return the reply. Raises NotRunning when no
        supervisor answers, ControlError (``usage`` set for a wrong request) when it
        refuses, OSError or ValueError when the socket breaks mid-way."""
        return control.Client(self.state_dir, self.timeout if timeout is None else timeout).request(cmd, **args)

    def tail(self, n: int, flt: LogFilter = LogFilter(), fmt: str = "text") -> list[str]:
        """The last ``n`` log lines through ``flt``, oldest first, as ``fmt`` ("text" or
        "json"); FileNotFoundError (one line) when there is no log yet."""
        return reader.tail(self.log_path, n, flt, fmt)

    def follow(self, flt: LogFilter = LogFilter(), n: int = 0, stop: threading.Event | None = None,
               poll: float = 0.1, fmt: str = "text") -> Iterator[str]:
        """The last ``n`` log lines through ``flt``, then each new one as it is
        written, across rotations, until ``stop`` is set, as ``fmt`` ("text" or
        "json"); FileNotFoundError (one line) at once when there is no log yet."""
        return follow_log(self.log_path, flt, n, stop, poll, fmt)

    def events(self, n: int = 0, follow: bool = False, stop: threading.Event | None = None,
               poll: float = 0.1) -> Iterator[dict[str, Any]]:
        """Job outcomes as dicts (``event``, ``job_id``, ``class``, ``queue``,
        ``attempts``, ``run_time``, ``ts``, ``process``, ``host``): the last ``n``, then
        with ``follow`` each new one until ``stop`` is set. Lines that are not events
        are skipped. FileNotFoundError when no events file exists yet."""
        if follow:
            return follow_events(self.events_path, n, stop, poll)
        return _events(reader.tail(self.events_path, n, LogFilter()))
