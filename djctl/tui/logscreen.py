"""The log, full screen: filtered like ``djctl logs -p``, long lines wrapped (``w`` toggles)."""

from __future__ import annotations

from typing import ClassVar, Protocol, cast

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Input, RichLog

from djctl.daemon import client
from djctl.tui.keys import LOG_KEYS, KeyBar
from djctl.tui.logview import LogPanel


class _Console(Protocol):
    """What this screen asks of its app (DjctlTop, which imports this module)."""

    def follow_log(self, screen: Screen, proc: str | None) -> None: ...


class LogScreen(Screen[None]):
    """The log, full screen, filtered by process type or process (``-p worker``, ``-p worker.1``).
    Lines wrap, so a failure's reason is read in full at any width; ``w`` stops wrapping
    (then ← and → scroll sideways)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "app.pop_screen", "Back", show=False),
        Binding("slash", "focus_filter", show=False),
        *(Binding(k.key, k.action, k.label) for k in LOG_KEYS),
    ]

    def compose(self) -> ComposeResult:
        yield Input(placeholder="-p: a process type (worker) or a process (worker.1); empty: everything",
                    id="proc-filter")
        yield LogPanel(keep=5000, wrap=True, toggle=True, id="full-log")
        yield KeyBar(LOG_KEYS)

    def on_mount(self) -> None:
        self.query_one(RichLog).focus()
        cast(_Console, self.app).follow_log(self, None)

    def action_focus_filter(self) -> None:
        self.query_one("#proc-filter", Input).focus()

    def action_wrap(self) -> None:
        self.query_one(LogPanel).toggle_wrap()

    @on(Input.Submitted, "#proc-filter")
    def _filter(self, event: Input.Submitted) -> None:
        proc = event.value.strip().removeprefix("-p").strip() or None
        try:
            client.LogFilter(proc=proc)
        except ValueError as e:
            self.notify(str(e), severity="error")
            return
        cast(_Console, self.app).follow_log(self, proc)
        self.query_one(RichLog).focus()
