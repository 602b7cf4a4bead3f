"""The console's dialogs: confirm a destructive action, edit the filter, the keys, a traceback."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from djctl import config
from djctl.tui.keys import HELP
from djctl.tui.sources import JobFilter


class ConfirmScreen(ModalScreen[bool]):
    """Asks before a destructive action. Cancel has the focus: Enter alone changes nothing."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel")]

    def __init__(self, question: str, verb: str = "Delete") -> None:
        super().__init__()
        self.question, self.verb = question, verb

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="question")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(self.verb, id="confirm", variant="error")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")


class FilterScreen(ModalScreen["JobFilter | None"]):
    """Edits the filter: queue (exact), job class, text."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, current: JobFilter) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Grid(id="dialog"):
            yield Label("Filter (empty: everything; Enter applies, Esc cancels)", id="filter-title")
            yield Label("queue")
            yield Input(self.current.queue or "", placeholder=f"name, or {config.current().default_queue}", id="queue")
            yield Label("job class")
            yield Input(self.current.job_class, placeholder="e.g. Newsletter (its name, not its arguments)",
                        id="job_class")
            yield Label("text")
            yield Input(self.current.text, placeholder="in the error or the arguments", id="text")

    @on(Input.Submitted)
    def _apply(self) -> None:
        value = {i.id: i.value.strip() for i in self.query(Input)}
        self.dismiss(JobFilter(value["queue"] or None, value["job_class"], value["text"]))


class HelpScreen(ModalScreen[None]):
    """Every key and what it does."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Label("djctl top — keys", id="help-title")
            for key, what in HELP:
                yield Static(f"[b]{key:>7}[/b]  {what}")
            yield Static("\nProcesses come from every host sharing the database; throughput from this host's "
                         "log. cpu and mem are the job's: a worker runs it in its executor child. Throughput "
                         "errors are attempts that raised; failed jobs have failed for good.", classes="dim")


class TracebackScreen(ModalScreen[None]):
    """One failed job's last error, full screen: the job's own frames first."""

    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close")]

    def __init__(self, title: str, traceback: str) -> None:
        super().__init__()
        self.title_text, self.traceback = title, traceback

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Label(self.title_text, id="help-title")
            yield Static(Text(self.traceback, style="red"), id="full-traceback")
