"""The supervisor's log format: one Heroku-format line, its parse, and the filter readers apply.

A line is ``<UTC timestamp with microseconds> <source>[<proc>]: <message>``::

    2026-11-22T10:04:05.123456+00:00 app[worker.1]: *** Starting job worker host:railgun pid:25794
    2026-11-22T10:04:05.200000+00:00 djctl[worker.1]: State changed from starting to up
    2026-11-22T10:04:09.000000+00:00 djctl[djctl]: Stopping all processes with SIGTERM

``source`` is ``app`` for what a process wrote and ``djctl`` for what the supervisor did.
``proc`` is the process (``worker.1``); events that concern the supervisor as a whole
(stopping everything, scaling) use the proc name ``djctl`` (:data:`SUPERVISOR`), so
``-p djctl`` shows exactly those and ``-p worker`` never does.

Process output is escaped (:func:`escape_output`) before it becomes a message, so no
output can pose as another line or another source.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from djctl.clock import now

APP = "app"
SUPERVISOR = "djctl"
SOURCES = (APP, SUPERVISOR)

_NAME = r"[A-Za-z0-9_-]+"
_PROC = r"[A-Za-z0-9_.-]+"
_NAME_RE = re.compile(_NAME)
_PROC_RE = re.compile(_PROC)
_PROC_FILTER_RE = re.compile(r"[A-Za-z0-9_-]+(?:\.[0-9]+)?")
_LINE_RE = re.compile(
    r"(?P<at>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:[+-][0-9]{2}:[0-9]{2}|Z)) "
    rf"(?P<source>{_NAME})\[(?P<proc>{_PROC})\]:(?: (?P<message>.*))?"
)
# Every character a terminal or a line splitter (str.splitlines splits on \x0b, \x1c,
# \x85, \u2028 ...) could treat as a line break, a cursor move or the start of an escape
# sequence; the tab stays, as output uses it for layout.
_UNSAFE_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\r": "\\r", "\n": "\\n"}

Clock = Callable[[], datetime]


utcnow = now  # the log's clock: timezone-aware UTC


def escape_output(text: str) -> str:
    """``text`` with every control character (but the tab), ANSI escape introducer and
    Unicode line separator replaced by a visible escape (``\\r``, ``\\x1b``,
    ``\\u2028``): one line that shows what the process wrote and can pose as nothing else."""
    return _UNSAFE_RE.sub(_escape_char, text)


def _escape_char(m: re.Match[str]) -> str:
    c = m[0]
    if c in _NAMED:
        return _NAMED[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


@dataclass(frozen=True)
class LogLine:
    """One line of the log. ``at`` must be timezone-aware; ``message`` is one line
    (no ``\\n``, no trailing ``\\r``) so that ``parse(render())`` gives it back."""

    at: datetime
    source: str
    proc: str
    message: str

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("log time must be timezone-aware")
        if not _NAME_RE.fullmatch(self.source):
            raise ValueError(f"bad log source {self.source!r}")
        if not _PROC_RE.fullmatch(self.proc):
            raise ValueError(f"bad process name {self.proc!r}")
        if "\n" in self.message or self.message.endswith("\r"):
            raise ValueError("a log message is one line; LogWriter.write splits longer ones")

    def render(self) -> str:
        """The line as written to the log, without the newline."""
        at = self.at.astimezone(timezone.utc).isoformat(timespec="microseconds")
        return f"{at} {self.source}[{self.proc}]: {self.message}"

    @classmethod
    def parse(cls, line: str) -> LogLine | None:
        """The LogLine that ``line`` renders (a trailing newline is ignored), or None
        when it is not a log line."""
        line = line.removesuffix("\n").removesuffix("\r")
        m = _LINE_RE.fullmatch(line)
        if m is None:
            return None
        try:
            at = datetime.fromisoformat(m["at"]).astimezone(timezone.utc)
        except ValueError:
            return None
        return cls(at, m["source"], m["proc"], m["message"] or "")


@dataclass(frozen=True)
class LogFilter:
    """Which lines a reader wants. ``proc`` is a type (``worker``: worker.1, worker.2
    and a proc named exactly ``worker``) or one process (``worker.1``); ``source`` is
    ``app`` or ``djctl``. None means any. Bad values raise ValueError (one line)."""

    proc: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.proc is not None and not _PROC_FILTER_RE.fullmatch(self.proc):
            raise ValueError(
                f"bad process filter {self.proc!r}; use a type (worker) or a process (worker.1)"
            )
        if self.source is not None and self.source not in SOURCES:
            raise ValueError(f"bad log source {self.source!r}; use {' or '.join(SOURCES)}")

    @property
    def everything(self) -> bool:
        """True when the filter lets every line through."""
        return self.proc is None and self.source is None

    def matches(self, line: LogLine) -> bool:
        """Whether ``line`` passes the filter."""
        if self.source is not None and line.source != self.source:
            return False
        if self.proc is None or line.proc == self.proc:
            return True
        return "." not in self.proc and line.proc.startswith(self.proc + ".")
