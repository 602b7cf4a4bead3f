"""Every line the supervisor writes: its log (process output and its own events) and
the events file (job outcomes the processes report)."""

from __future__ import annotations

from typing import TextIO

from djctl.daemon.logs import APP, SUPERVISOR, LogLine, LogWriter, escape_output, utcnow
from djctl.daemon.logs import events as job_events


class Printer:
    """Every line the supervisor logs: process output as ``app[worker.1]``, its own
    events as ``djctl[worker.1]``. With ``echo`` (``--foreground``) each line is also
    written there, as foreman does. Job outcomes go to ``events``, the events file."""

    def __init__(self, log: LogWriter, echo: TextIO | None = None, events: LogWriter | None = None) -> None:
        self.log = log
        self.echo = echo
        self.events = events

    def app(self, proc: str, line: str) -> None:
        """Log one line of a process's output, escaped so that it stays one line of
        ``app[proc]`` whatever bytes it holds."""
        self._write(APP, proc, escape_output(line))

    def event(self, proc: str, message: str) -> None:
        """Log what the supervisor did, as ``djctl[proc]``."""
        self._write(SUPERVISOR, proc, message)

    def job_event(self, proc: str, host: str, raw: str) -> None:
        """Append one line a process wrote on its event pipe to the events file,
        stamped with ``proc`` and ``host``; what is not an event is dropped."""
        line = job_events.stamp(raw, proc, host)
        if line is not None and self.events is not None:
            self.events.append(line)

    def _write(self, source: str, proc: str, message: str) -> None:
        self.log.write(source, proc, message)
        if self.echo is not None:
            try:
                for part in message.rstrip("\r\n").split("\n"):
                    self.echo.write(LogLine(utcnow(), source, proc, part.removesuffix("\r")).render() + "\n")
                self.echo.flush()
            except (OSError, ValueError):
                self.echo = None
