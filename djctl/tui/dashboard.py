"""The main screen: every panel at once, sharing the terminal by what each holds.

Below :data:`COMPACT` rows the panels keep only their top border, and below
:data:`NARROW` columns the failed jobs' traceback pane gives its room to the table
(Enter shows a traceback full screen), so at 80x24 the supervisor's state, the process
counts, the deepest queues, the failed count and the newest log lines are all on the
first screen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, cast

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Static

from djctl.tui.keys import ACTIONS, KeyBar, allowed
from djctl.tui.layout import share
from djctl.tui.logview import LogPanel
from djctl.tui.model import JobFilter, Snapshot
from djctl.tui.widgets import FailedPanel, ProcessPanel, QueuePanel, ThroughputPanel


class _Console(Protocol):
    """What the dashboard asks of its app (DjctlTop, which imports this module)."""

    def start(self) -> None: ...


COMPACT = 32
"""Fewer rows than this: one border line per panel."""
NARROW = 110
"""Fewer columns than this: no traceback pane beside the failed jobs."""
TRACEBACK_ROWS = 8
"""What the failed-jobs panel wants for its traceback pane when it has one."""


def status_line(snapshot: Snapshot | None, description: str, now: datetime, flt: JobFilter,
                error: str = "") -> Text:
    """The top line, most important first (a narrow terminal cuts the end): the
    supervisor's state and formation, an error, the failed count, the filter, the time
    and the database."""
    out = Text(no_wrap=True, overflow="ellipsis")
    parts: list[Text] = []
    if snapshot is None:
        parts.append(Text("connecting…", "dim"))
    else:
        sup = snapshot.supervisor
        if sup.running:
            parts.append(Text.assemble(("● ", "green"), ("supervisor running", "bold")))
            if sup.formation:
                parts.append(Text(" ".join(f"{t}={n}" for t, n in sup.formation.items())))
        else:
            parts.append(Text.assemble(("○ ", "red"), (sup.note or "no supervisor running", "bold")))
    if error:
        parts.append(Text(error, "bold red"))
    if snapshot is not None:
        failed = snapshot.failed_total
        parts.append(Text(f"{failed} failed", "bold red" if failed else ""))
        if snapshot.left_unrun:
            parts.append(Text(f"{snapshot.left_unrun} left unrun: no worker with an app (--app, DJ_APP)",
                              "bold yellow"))
    if flt.describe():
        parts.append(Text(f"filter: {flt.describe()}", "yellow"))
    parts.append(Text(now.strftime("%Y-%m-%d %H:%M:%S UTC")))
    parts.append(Text(description, "dim"))
    out.append_text(Text(" · ").join(parts))
    return out


class Dashboard(Screen[None]):
    """The main screen: every panel at once."""

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        yield ProcessPanel(id="process-panel")
        with Horizontal(id="middle"):
            yield QueuePanel(id="queue-panel")
            yield ThroughputPanel(id="throughput-panel")
        yield FailedPanel(id="failed-panel")
        yield LogPanel(id="log-panel")
        yield KeyBar(allowed(ACTIONS, getattr(self.app, "read_only", False)), id="keys")

    def on_mount(self) -> None:
        cast(_Console, self.app).start()

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.height < COMPACT, "-compact")
        self.set_class(event.size.width < NARROW, "-narrow")
        self.arrange_panels()

    def arrange_panels(self) -> None:
        """Share the rows among the panels by what each holds now."""
        snap: Snapshot | None = getattr(self.app, "snapshot", None)
        border = 1 if self.has_class("-compact") else 2
        processes = len(snap.processes) + (0 if snap.supervisor.running else 1) if snap else 1
        queues = len(snap.queues) if snap else 1
        failed = len(snap.failed) if snap else 1
        if not self.has_class("-narrow"):
            failed = max(failed, TRACEBACK_ROWS)
        wants = [border + 1 + max(1, processes), border + max(1 + queues, 3), border + 1 + max(1, failed), 10**6]
        least = [border + 2, border + 3, border + 2, border + 2]
        rows = share(max(0, self.size.height - 2), wants, least)
        for selector, n in zip(("#process-panel", "#middle", "#failed-panel", "#log-panel"), rows, strict=False):
            self.query_one(selector).styles.height = n
