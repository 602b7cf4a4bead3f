"""The log as the console shows it: shorter lines, and a panel that can wrap them.

The log file keeps every line in full (``djctl logs`` prints it as written). The console
drops what it can say in less room: the date (the header shows it), and the worker's
``[Worker(host:… pid:…)]`` prefix, which repeats the process name already on the line.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.widgets import RichLog

from djctl.daemon import client
from djctl.tui.logtail import LogFollower
from djctl.tui.widgets import Frame, Panel

_WORKER_PREFIX = re.compile(r"\[Worker\(host:\S+ pid:\d+\)\] ")
_OUTCOME = re.compile(r"\b(COMPLETED|FAILED( permanently)?)\b")


def render_line(line: str) -> Text:
    """``10:04:05 worker.1 Job ImportCsv (id=7) FAILED …``: one log line for the console;
    the supervisor's own lines dimmed, outcomes coloured. A line that is not in the
    log's format is shown as it is."""
    parsed = client.LogLine.parse(line)
    if parsed is None:
        return Text(line)
    message = _WORKER_PREFIX.sub("", parsed.message, count=1)
    out = Text.assemble((parsed.at.strftime("%H:%M:%S"), "dim"), " ", (parsed.proc, "bold cyan"), " ")
    body = Text(message, style="dim" if parsed.source == client.SOURCES[1] else "")
    for m in _OUTCOME.finditer(message):
        body.stylize("bold green" if m[1] == "COMPLETED" else "bold red", m.start(), m.end())
    out.append_text(body)
    return out


class LogPanel(Panel):
    """The log's tail; lines are pushed in by :meth:`write`, never read here. ``wrap``
    folds long lines onto the next rows instead of cutting them at the right edge;
    ``toggle`` says that ``w`` changes that."""

    TITLE = "Log"

    def __init__(self, keep: int = 1000, wrap: bool = False, toggle: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.keep = keep
        self.wrap = wrap
        self.toggle = toggle
        """Whether ``w`` toggles wrapping here (the subtitle says so)."""
        self.count = 0
        """How many log lines arrived since the panel was (re)attached."""
        self._kept: deque[str] = deque(maxlen=keep)

    def compose(self) -> ComposeResult:
        # min_width: RichLog renders at least 78 cells wide, which cuts wrapped lines on
        # an 80-column terminal (the border, padding and scrollbar take the rest).
        yield RichLog(max_lines=self.keep, wrap=self.wrap, markup=False, min_width=1, id="log-lines")

    def attach(self, follower: LogFollower, filter_text: str = "") -> None:
        """Show what ``follower`` (running elsewhere) reads from now on, instead of what was shown."""
        self._follower, self._filter_text = follower, filter_text
        self._kept.clear()
        self.count = 0
        self.query_one(RichLog).clear()
        self._drain()

    @property
    def shown(self) -> list[str]:
        """The log lines the panel holds now, as the log file has them, oldest first."""
        return list(self._kept)

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(0.25, self._drain)

    def toggle_wrap(self) -> None:
        """Wrap long lines, or stop wrapping them (then ← → scroll sideways)."""
        self.wrap = not self.wrap
        self.query_one(RichLog).wrap = self.wrap
        self._rewrite()
        self._subtitle()

    def on_resize(self, event: events.Resize) -> None:
        # Lines are wrapped when written, at the width of that moment: fold them again.
        if self.wrap and event.size.width != getattr(self, "_wrapped_at", None):
            self._wrapped_at = event.size.width
            self._rewrite()
        # A panel that grew or shrank still shows the newest lines.
        self.query_one(RichLog).scroll_end(animate=False, immediate=False)

    def _rewrite(self) -> None:
        view = self.query_one(RichLog)
        view.clear()
        for line in self._kept:
            view.write(render_line(line))

    def _drain(self) -> None:
        if getattr(self, "_follower", None) is None:
            return
        self.write(self._follower.take())
        self._subtitle()

    def _subtitle(self) -> None:
        follower = getattr(self, "_follower", None)
        parts = [f"-p {self._filter_text}"] if getattr(self, "_filter_text", "") else []
        if follower is not None:
            parts.append(follower.status)
        if self.toggle:
            parts.append("w: unwrap" if self.wrap else "w: wrap, ← →: scroll")
        self.border_subtitle = " · ".join(parts)

    def write(self, lines: Sequence[str]) -> None:
        """Add ``lines`` (as the log file has them) at the bottom."""
        view = self.query_one(RichLog)
        for line in lines:
            self._kept.append(line)
            view.write(render_line(line))
        self.count += len(lines)

    def show(self, frame: Frame) -> None:
        pass  # the log arrives through its follower, as fast as it is written
