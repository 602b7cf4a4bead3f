"""Every line the supervisor writes: its log (process output and its own events) and
the events file (job outcomes the processes report)."""

from __future__ import annotations

from typing import TextIO

from djctl.daemon.logs import APP, SUPERVISOR, LogLine, LogWriter, escape_output, utcnow
from djctl.daemon.logs import events as job_events
from djctl.daemon.logs.records import Record, job_record


class Printer:
    """Every line the supervisor logs: process output as ``app[worker.1]``, its own
    events as ``djctl[worker.1]``. With ``echo`` (``--foreground``) each line is also
    written there, as foreman does, in the log's format. Job outcomes go to ``events``,
    the events file, and to a JSON log as records of their own."""

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
        if line is None:
            return
        if self.events is not None:
            self.events.append(line)
        if self.log.fmt == "json":
            event = job_events.parse(line)
            if event is not None:
                record = job_record(event, proc, utcnow()).to_json()
                self.log.append(record)
                self._echo([record])

    def _write(self, source: str, proc: str, message: str) -> None:
        self.log.write(source, proc, message)
        if self.echo is not None:
            lines = [LogLine(utcnow(), source, proc, part.removesuffix("\r"))
                     for part in message.rstrip("\r\n").split("\n")]
            self._echo([Record(line).to_json() if self.log.fmt == "json" else line.render() for line in lines])

    def _echo(self, lines: list[str]) -> None:
        if self.echo is None:
            return
        try:
            for line in lines:
                self.echo.write(line + "\n")
            self.echo.flush()
        except (OSError, ValueError):
            self.echo = None
