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
from typing import ClassVar, cast

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import get_current_worker

from djctl import api, config
from djctl.daemon import client
from djctl.errors import one_line as _one_line
from djctl.queue import stats
from djctl.tui.dashboard import Dashboard, status_line
from djctl.tui.dialogs import ConfirmScreen, HelpScreen, TracebackScreen
from djctl.tui.keys import ACTIONS, allowed
from djctl.tui.logscreen import LogScreen
from djctl.tui.logtail import EventFollower, LogFollower, Throughput
from djctl.tui.logview import LogPanel
from djctl.tui.messages import Done, Loaded, TracebackLoaded
from djctl.tui.model import Clock, JobFilter, Snapshot, Source
from djctl.tui.search import FilterScreen, JobScreen
from djctl.tui.sources import ActionError, DatabaseSource, utcnow
from djctl.tui.table import RowTable
from djctl.tui.tracebacks import own_frames_first
from djctl.tui.widgets import FailedPanel, Frame, Panel, ProcessPanel, QueuePanel

__all__ = ["DjctlTop", "FilterScreen", "JobScreen", "run_console"]


class DjctlTop(App[None]):
    """The console. ``source`` gives data and actions; ``clock`` the time shown."""

    CSS_PATH = "djctl.tcss"
    TITLE = "djctl top"
    # Ctrl+C quits, as it ends every other djctl command (Textual would only hint at ctrl+q,
    # and what the operator typed next would reach the console as keys).
    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(k.key, k.action, k.label) for k in ACTIONS),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True)]

    def __init__(self, source: Source, clock: Clock = utcnow, refresh: float = 1.0, window: int = 120,
                 read_only: bool = False) -> None:
        super().__init__()
        self.source = source
        self.read_only = read_only
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
        return cast(Dashboard, self.screen_stack[0])  # Textual types the stack as Screen[Any]

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
        self.dashboard.arrange_panels()
        self._status()

    def _status(self, error: str = "") -> None:
        line = status_line(self.snapshot, self.source.description, self.clock(), self.filter, error)
        # query, not query_one: a refresh may land while the app is closing and the
        # dashboard's widgets are already gone.
        for status in self.dashboard.query("#status").results(Static):
            status.update(line)

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

    def _refused(self, action: str) -> bool:
        """In a read-only console, say why ``action`` (as bound) does nothing; True when
        refused (before it runs: nothing reaches the database or the supervisor)."""
        if not self.read_only:
            return False
        label = next(k.label for k in ACTIONS if k.action == action)
        self.notify(f"{label}: not allowed in a read-only console", severity="warning")
        return True

    def _confirm(self, question: str, fn: Callable[[], str], verb: str = "Delete") -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._act(fn)
        self.push_screen(ConfirmScreen(question, verb), answered)

    def action_scale(self, delta: int) -> None:
        if self._refused(f"scale({delta})"):
            return
        proc = self.dashboard.query_one(ProcessPanel).selected()
        if proc is None:
            self.notify("no process type to scale: no supervisor has run here yet (djctl up)", severity="warning")
            return
        self._act(lambda: self.source.scale(proc.type, delta))

    def action_retry(self) -> None:
        if self._refused("retry"):
            return
        job = self.dashboard.query_one(FailedPanel).selected()
        if job is None:
            self.notify("no failed job selected", severity="warning")
            return
        self._act(lambda: _jobs("Retrying", self.source.retry([job.id])))

    def action_retry_all(self) -> None:
        if self._refused("retry_all"):
            return
        flt = self.filter
        self._act(lambda: _jobs("Retrying", self.source.retry_failed(flt)))

    def action_delete(self) -> None:
        if self._refused("delete"):
            return
        panel = self.dashboard.query_one(FailedPanel)
        job = panel.selected()
        if job is None:
            self.notify("no failed job selected", severity="warning")
            return
        if not panel.query_one(RowTable).cursor_in_view():
            # New failures arrive at the top and push the selection down, out of sight.
            self.notify(f"the selected job ({job.id}) is off screen: select the job to delete first",
                        severity="warning")
            return
        self._confirm(f"Delete job {job.id} ({job.name})?", lambda: _jobs("Deleted", self.source.delete([job.id])))

    def action_delete_all(self) -> None:
        if self._refused("delete_all"):
            return
        flt = self.filter
        total = self.snapshot.failed_total if self.snapshot else 0
        scope = f" matching {flt.describe()}" if flt.describe() else ""
        self._confirm(f"Delete {_all_shown(total)}{scope}?", lambda: _jobs("Deleted", self.source.delete_failed(flt)))

    def action_clear_queue(self) -> None:
        if self._refused("clear_queue"):
            return
        row = self.dashboard.query_one(QueuePanel).selected()
        if row is None:
            self.notify("no queue selected", severity="warning")
            return
        jobs = sum(q.ready + q.scheduled + q.running + q.failed for q in self.snapshot.queues
                   if q.queue == row.queue) if self.snapshot else 0
        what = "its one job" if jobs == 1 else f"all its {jobs} jobs"
        self._confirm(f"Clear queue {stats.queue_label(row.queue)}: delete {what}, of every priority?",
                      lambda: _jobs("Deleted", self.source.clear_queue(row.queue)), verb="Clear")

    def action_pause_queue(self) -> None:
        row = self.dashboard.query_one(QueuePanel).selected()
        if row is None or self.snapshot is None:
            self.notify("no queue selected", severity="warning")
            return
        if self.snapshot.is_paused(row.queue):
            self._act(lambda: self.source.resume_queue(row.queue))
        else:
            self._act(lambda: self.source.pause_queue(row.queue))

    def action_cancel_job(self) -> None:
        proc = self.dashboard.query_one(ProcessPanel).selected()
        if proc is None or proc.job_id is None:
            self.notify("no running job selected: select a process that runs one (Processes, tab)",
                        severity="warning")
            return
        job_id, where = proc.job_id, f"{proc.name} on {proc.host}"
        self._confirm(f"Cancel job {proc.job} running in {where}? Its executor is killed at once, "
                      "and the job is kept as failed, never run again.",
                      lambda: f"Cancelled job {job_id}." if self.source.cancel([job_id]) else "", verb="Cancel job")

    def action_filter(self) -> None:
        def chosen(flt: JobFilter | None) -> None:
            if flt is not None:
                self.filter = flt
                self._status()
                self.poll(force=True)
        self.push_screen(FilterScreen(self.filter, self.source), chosen)

    def action_log(self) -> None:
        self.push_screen(LogScreen())

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_traceback(self) -> None:
        panel = self.dashboard.query_one(FailedPanel)
        job = panel.selected()
        if job is None or self.screen is not self.dashboard:
            return
        self.push_screen(TracebackScreen(f"Job {job.id} ({job.name}) failed — Esc closes",
                                         own_frames_first(panel.traceback or job.error)))

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
        for k in allowed(ACTIONS, self.read_only):
            if k.action not in ("quit", "help"):
                yield SystemCommand(k.label, k.what, partial(self.run_action, k.action))


def _all_shown(n: int) -> str:
    """``the 1 failed job shown``, ``all 3 failed jobs shown``."""
    return "the 1 failed job shown" if n == 1 else f"all {n} failed jobs shown"


def _jobs(verb: str, n: int) -> str:
    return f"{verb} {n} job{'s' if n != 1 else ''}."


def run_console(settings: config.Settings | None = None, refresh: float = 1.0, read_only: bool = False) -> None:
    """Open the console on ``settings`` (default: the settings in force) until the operator
    quits; with ``read_only`` (or the console_read_only setting) no key changes anything."""
    s = settings or config.current()
    DjctlTop(DatabaseSource(s), refresh=refresh, read_only=read_only or s.console_read_only).run()
