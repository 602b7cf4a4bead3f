"""``djctl top``: the operations console (Textual).

The app owns no data: it asks its :class:`~djctl.tui.sources.Source` for a snapshot
every ``refresh`` seconds in a thread worker, and runs every operator action in one
too, so the screen never waits on the database or the supervisor. Workers post
messages back; only message handlers touch widgets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Input, Label, Log, Static
from textual.worker import get_current_worker

from djctl import api, config
from djctl.daemon import client
from djctl.errors import one_line as _one_line
from djctl.tui.logtail import EventFollower, LogFollower, Throughput
from djctl.tui.sources import (
    DEFAULT_QUEUE,
    ActionError,
    Clock,
    DatabaseSource,
    JobFilter,
    Snapshot,
    Source,
    queue_label,
    utcnow,
)
from djctl.tui.widgets import FailedPanel, Frame, LogPanel, Panel, ProcessPanel, QueuePanel, ThroughputPanel

# One table for the key bindings, the help screen and the command palette:
# (key, action, footer label, what it does).
ACTIONS = [
    ("plus", "scale(1)", "Scale up", "Scale the selected process type up by one"),
    ("minus", "scale(-1)", "Scale down", "Scale the selected process type down by one"),
    ("r", "retry", "Retry", "Retry the selected failed job"),
    ("R", "retry_all", "Retry all", "Retry all failed jobs shown (those the filter lets through)"),
    ("d", "delete", "Delete", "Delete the selected failed job (asks first)"),
    ("D", "delete_all", "Delete all", "Delete all failed jobs shown (asks first)"),
    ("c", "clear_queue", "Clear queue", "Clear the selected queue: delete all its jobs (asks first)"),
    ("slash", "filter", "Filter", "Filter by queue, job class and text"),
    ("l", "log", "Log", "The log, full screen; filter it like djctl logs -p"),
    ("question_mark", "help", "Help", "What each key does"),
    ("q", "quit", "Quit", "Quit"),
]
_SHOWN = {"plus": "+", "minus": "-", "slash": "/", "question_mark": "?"}
KEYS = [(_SHOWN.get(key, key), what) for key, _, _, what in ACTIONS] + [
    ("tab", "Move between the processes, queues and failed jobs"),
    ("ctrl+p", "Command palette"),
]


class Loaded(Message):
    """A refresh finished (``snapshot``) or failed (``error``), having taken ``cost`` seconds."""

    def __init__(self, snapshot: Snapshot | None, error: str = "", cost: float = 0.0) -> None:
        super().__init__()
        self.snapshot, self.error, self.cost = snapshot, error, cost


class Done(Message):
    """An operator action finished: ``text`` to show, as an error or not."""

    def __init__(self, text: str, error: bool = False) -> None:
        super().__init__()
        self.text, self.error = text, error


class TracebackLoaded(Message):
    def __init__(self, job_id: int, traceback: str | None) -> None:
        super().__init__()
        self.job_id, self.traceback = job_id, traceback


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
            yield Input(self.current.queue or "", placeholder=f"name, or {DEFAULT_QUEUE}", id="queue")
            yield Label("job class")
            yield Input(self.current.job_class, placeholder="e.g. Newsletter", id="job_class")
            yield Label("text")
            yield Input(self.current.text, placeholder="in the error or the arguments", id="text")

    @on(Input.Submitted)
    def _apply(self) -> None:
        value = {i.id: i.value.strip() for i in self.query(Input)}
        self.dismiss(JobFilter(value["queue"] or None, value["job_class"], value["text"]))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("djctl top — keys", id="help-title")
            for key, what in KEYS:
                yield Static(f"[b]{key:>7}[/b]  {what}")
            yield Static("\nProcesses come from every host sharing the database; throughput from this host's log.",
                         classes="dim")


class LogScreen(Screen[None]):
    """The log, full screen, filtered by process type or process (``-p worker``, ``-p worker.1``)."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("l", "app.pop_screen", "Back", show=False),
                Binding("p,slash", "focus_filter", "Filter -p")]

    def compose(self) -> ComposeResult:
        yield Input(placeholder="-p: a process type (worker) or a process (worker.1); empty: everything",
                    id="proc-filter")
        yield LogPanel(keep=5000, id="full-log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Log).focus()
        self.app.follow_log(self, None)

    def action_focus_filter(self) -> None:
        self.query_one("#proc-filter", Input).focus()

    @on(Input.Submitted, "#proc-filter")
    def _filter(self, event: Input.Submitted) -> None:
        proc = event.value.strip().removeprefix("-p").strip() or None
        try:
            client.LogFilter(proc=proc)
        except ValueError as e:
            self.notify(str(e), severity="error")
            return
        self.app.follow_log(self, proc)
        self.query_one(Log).focus()


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
        yield Footer()

    def on_mount(self) -> None:
        self.app.start()


class DjctlTop(App[None]):
    """The console. ``source`` gives data and actions; ``clock`` the time shown."""

    CSS_PATH = "djctl.tcss"
    TITLE = "djctl top"
    BINDINGS = [Binding(key, action, label) for key, action, label, _ in ACTIONS]

    def __init__(self, source: Source, clock: Clock = utcnow, refresh: float = 1.0, window: int = 120) -> None:
        super().__init__()
        self.source = source
        self.clock = clock
        self.refresh_every = refresh
        self.filter = JobFilter()
        self.throughput = Throughput(window)
        self.snapshot: Snapshot | None = None
        self.loads = 0
        self._cost = 0.0
        self._loaded_at = 0.0

    def get_default_screen(self) -> Screen:
        return Dashboard()

    @property
    def dashboard(self) -> Dashboard:
        """The main screen (the bottom of the stack), whichever screen shows now."""
        return self.screen_stack[0]

    def start(self) -> None:
        """Begin refreshing and following the log (once the dashboard is mounted)."""
        self._status()
        self.poll()
        self.set_interval(self.refresh_every, self.poll)
        self._follow(EventFollower(self.source.events_path, on_event=self.throughput.record, backlog=5000))
        self.follow_log(self.dashboard, None)

    # -- refreshing ---------------------------------------------------------------

    def poll(self, force: bool = False) -> None:
        """Start a refresh unless one is running, or (unless ``force``) the last one was
        so slow that another now would take more than a fifth of the database's time."""
        if not self.screen_stack or any(w.group == "poll" and w.is_running for w in self.workers):
            return
        if force or time.monotonic() - self._loaded_at >= 4 * self._cost:
            self._load()

    @work(thread=True, group="poll")
    def _load(self) -> None:
        started = time.monotonic()
        try:
            snap = self.source.snapshot(self.filter)
        except Exception as e:  # noqa: BLE001 - a database that went away must not end the console
            self.post_message(Loaded(None, f"refresh failed: {_one_line(e)}", time.monotonic() - started))
            return
        self.post_message(Loaded(snap, cost=time.monotonic() - started))

    def on_loaded(self, message: Loaded) -> None:
        if not self.screen_stack:
            return  # a refresh that finished while the app was closing
        self._cost, self._loaded_at = message.cost, time.monotonic()
        if message.snapshot is None:
            self._status(message.error)
            return
        self.snapshot = message.snapshot
        self.loads += 1
        self._redraw()

    def _redraw(self) -> None:
        if self.snapshot is None:
            return
        now = self.clock()
        done, failed = self.throughput.series(now)
        frame = Frame(self.snapshot, api.utc_naive(now), done, failed, self.throughput.rates(now))
        for panel in self.dashboard.query(Panel).results():
            panel.show(frame)
        self._status()

    def _status(self, error: str = "") -> None:
        parts = [f"djctl top · {self.source.description}", self.clock().strftime("%Y-%m-%d %H:%M:%S UTC")]
        if self.snapshot is not None:
            sup = self.snapshot.supervisor
            parts.append("supervisor running" if sup.running else sup.note or "no supervisor running")
        if self.filter.describe():
            parts.append(f"filter: {self.filter.describe()}")
        if error:
            parts.append(f"[b red]{error}[/]")
        # query, not query_one: a refresh may land while the app is closing and the
        # dashboard's widgets are already gone.
        for status in self.dashboard.query("#status").results(Static):
            status.update(" · ".join(parts))

    # -- the log ------------------------------------------------------------------

    def follow_log(self, screen: Screen, proc: str | None) -> None:
        """Show the log in ``screen``'s LogPanel through ``-p proc``, replacing its earlier follower."""
        self.workers.cancel_group(screen, "log")
        follower = LogFollower(self.source.log_path, client.LogFilter(proc=proc))
        screen.query_one(LogPanel).attach(follower, proc or "")
        screen.run_worker(lambda: self._run_follower(follower), thread=True, group="log")

    def _follow(self, follower: EventFollower) -> None:
        self.run_worker(lambda: self._run_follower(follower), thread=True, group="throughput")

    @staticmethod
    def _run_follower(follower: LogFollower | EventFollower) -> None:
        follower.run(get_current_worker().cancelled_event)

    # -- actions --------------------------------------------------------------------

    @work(thread=True, group="act")
    def _act(self, fn: Callable[[], str]) -> None:
        try:
            self.post_message(Done(fn()))
        except Exception as e:  # noqa: BLE001 - shown to the operator; the console stays up
            self.post_message(Done(str(e) if isinstance(e, ActionError) else f"failed: {_one_line(e)}", error=True))

    def on_done(self, message: Done) -> None:
        if not self.screen_stack:
            return
        self.notify(message.text, severity="error" if message.error else "information")
        self.poll(force=True)

    def _confirm(self, question: str, fn: Callable[[], str], verb: str = "Delete") -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._act(fn)
        self.push_screen(ConfirmScreen(question, verb), answered)

    def action_scale(self, delta: int) -> None:
        proc = self.dashboard.query_one(ProcessPanel).selected()
        if proc is None:
            self.notify("no process type to scale: no supervisor has run here yet (djctl up)", severity="warning")
            return
        self._act(lambda: self.source.scale(proc.type, delta))

    def action_retry(self) -> None:
        job = self.dashboard.query_one(FailedPanel).selected()
        if job is None:
            self.notify("no failed job selected", severity="warning")
            return
        self._act(lambda: _jobs("Retrying", self.source.retry([job.id])))

    def action_retry_all(self) -> None:
        flt = self.filter
        self._act(lambda: _jobs("Retrying", self.source.retry_failed(flt)))

    def action_delete(self) -> None:
        job = self.dashboard.query_one(FailedPanel).selected()
        if job is None:
            self.notify("no failed job selected", severity="warning")
            return
        self._confirm(f"Delete job {job.id} ({job.name})?", lambda: _jobs("Deleted", self.source.delete([job.id])))

    def action_delete_all(self) -> None:
        flt = self.filter
        total = self.snapshot.failed_total if self.snapshot else 0
        scope = f" matching {flt.describe()}" if flt.describe() else ""
        self._confirm(f"Delete all {total} failed jobs shown{scope}?",
                      lambda: _jobs("Deleted", self.source.delete_failed(flt)))

    def action_clear_queue(self) -> None:
        row = self.dashboard.query_one(QueuePanel).selected()
        if row is None:
            self.notify("no queue selected", severity="warning")
            return
        jobs = sum(q.ready + q.scheduled + q.running + q.failed for q in self.snapshot.queues
                   if q.queue == row.queue) if self.snapshot else 0
        self._confirm(f"Clear queue {queue_label(row.queue)}: delete all its {jobs} jobs, of every priority?",
                      lambda: _jobs("Deleted", self.source.clear_queue(row.queue)), verb="Clear")

    def action_filter(self) -> None:
        def chosen(flt: JobFilter | None) -> None:
            if flt is not None:
                self.filter = flt
                self._status()
                self.poll(force=True)
        self.push_screen(FilterScreen(self.filter), chosen)

    def action_log(self) -> None:
        self.push_screen(LogScreen())

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def on_failed_panel_selected(self, message: FailedPanel.Selected) -> None:
        self._traceback(message.job_id)

    @work(thread=True, group="traceback", exclusive=True)
    def _traceback(self, job_id: int) -> None:
        try:
            self.post_message(TracebackLoaded(job_id, self.source.traceback(job_id)))
        except Exception:  # noqa: BLE001 - the next refresh shows what is wrong with the database
            pass

    def on_traceback_loaded(self, message: TracebackLoaded) -> None:
        if self.screen_stack:
            self.dashboard.query_one(FailedPanel).show_traceback(message.job_id, message.traceback)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for _, action, label, what in ACTIONS:
            if action not in ("quit", "help"):
                yield SystemCommand(label, what, partial(self.run_action, action))


def _jobs(verb: str, n: int) -> str:
    return f"{verb} {n} job{'s' if n != 1 else ''}."


def run_console(settings: config.Settings | None = None, refresh: float = 1.0) -> None:
    """Open the console on ``settings`` (default: the settings in force) until the operator quits."""
    s = settings or config.current()
    DjctlTop(DatabaseSource(s), refresh=refresh).run()
