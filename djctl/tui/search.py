"""``/``: the filter, and the jobs in every state that match it, as the operator types;
Enter on a job opens its detail view (:class:`JobScreen`).

Enter in a field applies the filter to the dashboard (its queues and failed jobs, and the
actions on "all shown") and closes the dialog; the list below the fields is read from the
database in a thread worker (``Source.find_jobs``, djctl.queue.lookup), never on the screen's
own thread.
"""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from djctl import config
from djctl.queue import lookup, stats
from djctl.tui.messages import JobRead, JobsFound
from djctl.tui.model import JobFilter, Source
from djctl.tui.table import Column, RowTable

SEARCH_LIMIT = 50
_STATE_STYLE = {lookup.State.RUNNING: "green", lookup.State.READY: "", lookup.State.SCHEDULED: "cyan",
                lookup.State.FAILED: "red"}


class FilterScreen(ModalScreen["JobFilter | None"]):
    """Edits the filter (queue exact, job class, text or id) and lists the jobs of every
    state it matches; Enter on a listed job shows it whole."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, current: JobFilter, source: Source | None = None) -> None:
        super().__init__()
        self.current = current
        self.source = source

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            with Grid(id="filter-fields"):
                yield Label("Filter (empty: everything; Enter applies, Esc cancels, Tab to the jobs)",
                            id="filter-title")
                yield Label("queue")
                yield Input(self.current.queue or "", placeholder=f"name, or {config.current().default_queue}",
                            id="queue")
                yield Label("job class")
                yield Input(self.current.job_class, placeholder="e.g. Newsletter (its name, not its arguments)",
                            id="job_class")
                yield Label("text or id")
                yield Input(self.current.text, placeholder="in the error or the arguments; a number: the job's id",
                            id="text")
            yield Static("", id="found-title")
            yield RowTable(Column("id"), Column("state"), Column("class"), Column("queue", 2), Column("pri", 3),
                           Column("att", 3), Column("run_at", 4), Column("last_error", 5, stretch=True),
                           id="found")

    def on_mount(self) -> None:
        self._search()

    def _filter(self) -> JobFilter:
        value = {i.id: i.value.strip() for i in self.query(Input)}
        return JobFilter(value["queue"] or None, value["job_class"], value["text"])

    @on(Input.Changed)
    def _changed(self) -> None:
        self._search()

    def _search(self) -> None:
        if self.source is not None:
            self._find(self._filter())

    @work(thread=True, exclusive=True, group="search")
    def _find(self, flt: JobFilter) -> None:
        assert self.source is not None
        try:
            self.post_message(JobsFound(flt, self.source.find_jobs(flt, SEARCH_LIMIT)))
        except Exception as e:  # noqa: BLE001 - shown in the dialog; the console stays up
            self.post_message(JobsFound(flt, [], str(e).splitlines()[0] if str(e) else type(e).__name__))

    def on_jobs_found(self, message: JobsFound) -> None:
        if message.flt != self._filter():
            return  # the operator typed on meanwhile
        what = message.flt.describe() or "every job"
        more = " (the first shown; narrow the filter for the rest)" if len(message.rows) >= SEARCH_LIMIT else ""
        title = f"cannot search: {message.error}" if message.error else \
            f"{len(message.rows)} job{'s' if len(message.rows) != 1 else ''} matching {what}{more} — Enter shows one"
        self.query_one("#found-title", Static).update(title)
        self.query_one("#found", RowTable).fill([(str(r.id), _cells(r)) for r in message.rows])

    @on(Input.Submitted)
    def _apply(self) -> None:
        self.dismiss(self._filter())

    @on(RowTable.RowSelected, "#found")
    def _open(self, event: RowTable.RowSelected) -> None:
        key = event.row_key.value
        if key is not None and self.source is not None:
            self.app.push_screen(JobScreen(self.source, int(key)))


def _cells(r: lookup.JobRow) -> tuple:
    return (str(r.id), Text(r.state.value, _STATE_STYLE[r.state]), r.name, stats.queue_label(r.queue), str(r.priority),
            str(r.attempts), r.run_at.strftime("%Y-%m-%d %H:%M:%S"), r.error)


class JobScreen(ModalScreen[None]):
    """One job whole, as ``djctl show`` prints it: class and arguments (read as JSON,
    never run), every column, the full traceback."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, source: Source, job_id: int) -> None:
        super().__init__()
        self.source, self.job_id = source, job_id

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Label(f"Job {self.job_id} — Esc closes", id="help-title")
            yield Static("reading…", id="job-detail")

    def on_mount(self) -> None:
        self._read()

    @work(thread=True, group="job")
    def _read(self) -> None:
        try:
            self.post_message(JobRead(self.source.job(self.job_id)))
        except Exception as e:  # noqa: BLE001 - shown in the screen
            self.post_message(JobRead(None, str(e).splitlines()[0] if str(e) else type(e).__name__))

    def on_job_read(self, message: JobRead) -> None:
        body = self.query_one("#job-detail", Static)
        if message.error:
            body.update(Text(f"cannot read job {self.job_id}: {message.error}", "red"))
        elif message.detail is None:
            body.update(Text(f"job {self.job_id} is gone: a job that completed is deleted", "yellow"))
        else:
            body.update(Text(lookup.render_detail(message.detail)))
