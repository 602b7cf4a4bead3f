"""The console's panels: one small class each, on a shared base.

A panel only displays: it is handed a :class:`Frame` (a snapshot of the data, the time
and the throughput) and never reads the database or a file itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Sparkline, Static

from djctl.queue import stats
from djctl.queue.stats import FailedJob
from djctl.tui.model import ProcessRow, QueueRow, Snapshot
from djctl.tui.table import Column, RowTable
from djctl.tui.tracebacks import own_frames_first


@dataclass(frozen=True)
class Frame:
    """What every panel draws from: ``now`` is naive UTC like the snapshot's times;
    ``done`` / ``failed`` are jobs per second, oldest first."""

    snapshot: Snapshot
    now: datetime
    done: Sequence[int] = ()
    failed: Sequence[int] = ()
    rates: tuple[float, float] = (0.0, 0.0)


def age(delta: timedelta | None) -> str:
    """``45s``, ``3m 20s``, ``2h 5m``, ``4d 3h``: how long, to two units."""
    if delta is None:
        return ""
    s = max(0, int(delta.total_seconds()))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def size(n: int | None) -> str:
    if n is None:
        return ""
    scaled: float = n
    for unit in ("B", "K", "M", "G"):
        if scaled < 1024 or unit == "G":
            return f"{scaled:.0f}{unit}" if unit == "B" else f"{scaled:.1f}{unit}"
        scaled /= 1024
    return ""


def _since(now: datetime, then: datetime | None) -> timedelta | None:
    return None if then is None else now - then


class Panel(Vertical):
    """A bordered part of the dashboard. Subclasses compose their content and draw a Frame."""

    TITLE = ""

    def on_mount(self) -> None:
        self.border_title = self.TITLE

    def show(self, frame: Frame) -> None:
        """Draw ``frame``; called on the UI thread after every refresh."""
        raise NotImplementedError


class ProcessPanel(Panel):
    TITLE = "Processes"

    def compose(self) -> ComposeResult:
        yield Static("", id="process-note")
        yield RowTable(Column("process"), Column("host", 6), Column("pid", 4), Column("state"),
                       Column("uptime", 5), Column("cpu", 2), Column("mem", 3), Column("job", 2, stretch=True),
                       Column("running for", 4), id="processes")

    def show(self, frame: Frame) -> None:
        snap = frame.snapshot
        self._by_key = {f"{p.host}/{p.name}": p for p in snap.processes}
        note = self.query_one("#process-note", Static)
        if snap.supervisor.running:
            note.update("")
            note.display = False
        else:
            note.update(f"{snap.supervisor.note or 'no supervisor running'} — read-only: "
                        "processes as the database last recorded them (start one with: djctl up)")
            note.display = True
        self.border_subtitle = " ".join(f"{t}={n}" for t, n in snap.supervisor.formation.items())
        self.query_one(RowTable).fill([(k, self._cells(p, frame.now)) for k, p in self._by_key.items()])

    @staticmethod
    def _cells(p: ProcessRow, now: datetime) -> tuple:
        state = Text(p.state + (" (stale)" if p.stale else ""),
                     style={"up": "green", "crashed": "bold red", "down": "dim"}.get(p.state, "yellow"))
        return (p.name, p.host, "" if p.pid is None else str(p.pid), state,
                age(_since(now, p.since)) if p.pid is not None else "",
                "" if p.cpu is None else f"{p.cpu:.1f}%", size(p.memory),
                " ".join(filter(None, (p.job, p.progress))),
                age(_since(now, p.job_since)))

    def selected(self) -> ProcessRow | None:
        key = self.query_one(RowTable).selected_key()
        return getattr(self, "_by_key", {}).get(key) if key else None


class QueuePanel(Panel):
    TITLE = "Queues"

    def compose(self) -> ComposeResult:
        yield RowTable(Column("queue"), Column("pri", 2), Column("ready"), Column("sched", 5), Column("running", 4),
                       Column("failed", 2), Column("oldest", 3), id="queues")

    def show(self, frame: Frame) -> None:
        rows = frame.snapshot.queues
        # The deepest first: on a small screen the queues that back up are the ones shown.
        deepest = sorted(rows, key=lambda q: (-q.ready - q.waiting, -q.failed, stats.queue_label(q.queue), q.priority))
        self._by_key = {f"{stats.queue_label(q.queue)}|{q.priority}": q for q in deepest}
        snap = frame.snapshot
        self.query_one(RowTable).fill([
            (k, (self._label(q, snap), str(q.priority), _ready(q), str(q.scheduled), str(q.running),
                 Text(str(q.failed), style="red" if q.failed else ""), age(_since(frame.now, q.oldest_ready))))
            for k, q in self._by_key.items()
        ])
        total = [sum(getattr(q, f) for q in rows) for f in ("ready", "scheduled", "running", "failed")]
        every = "EVERY QUEUE PAUSED · " if stats.EVERY_QUEUE in snap.paused else ""
        self.border_subtitle = (every + _waiting(rows) +
                                "total: {} ready · {} scheduled · {} running · {} failed".format(*total))

    @staticmethod
    def _label(q: QueueRow, snap: Snapshot) -> Text:
        """The queue's name, and ``paused`` (in yellow) when no worker claims from it."""
        if snap.is_paused(q.queue):
            return Text.assemble(stats.queue_label(q.queue), (" paused", "bold yellow"))
        return Text(stats.queue_label(q.queue))

    def selected(self) -> QueueRow | None:
        key = self.query_one(RowTable).selected_key()
        return getattr(self, "_by_key", {}).get(key) if key else None


def _ready(q: QueueRow) -> Text | str:
    """Ready jobs, and those that wait on a key (``3+40w``: 40 wait for a slot or a throttle)."""
    if not q.waiting:
        return str(q.ready)
    return Text.assemble(str(q.ready), (f"+{q.waiting}w", "yellow"))


def _waiting(rows: Sequence[QueueRow]) -> str:
    """``40 waiting on account:42 (+2 keys) · ``: what ready jobs wait for, when some do."""
    on: dict[str, int] = {}
    for q in rows:
        for gate, n in q.waiting_on.items():
            on[gate] = on.get(gate, 0) + n
    if not on:
        return ""
    gate = max(on, key=lambda g: (on[g], g))
    others = f" (+{len(on) - 1} key{'s' if len(on) > 2 else ''})" if len(on) > 1 else ""
    return f"{sum(on.values())} waiting on {gate.split(':', 1)[1]}{others} · "


class ThroughputPanel(Panel):
    """Job outcomes per second. ``errors`` are attempts that raised (retried later, or
    failed for good): jobs failed for good are what the other panels call ``failed``."""

    TITLE = "Throughput"

    def compose(self) -> ComposeResult:
        yield Static("", id="rates")
        with Horizontal(classes="spark-row"):
            yield Static("done", classes="spark-label")
            yield Sparkline([], id="done")
        with Horizontal(classes="spark-row"):
            yield Static("errors", classes="spark-label")
            yield Sparkline([], id="failures")

    def show(self, frame: Frame) -> None:
        done, failed = frame.rates
        self.query_one("#rates", Static).update(
            Text.assemble(("done ", ""), (f"{done:.1f}/s", "bold green"), ("  errors ", ""),
                          (f"{failed:.1f}/s", "bold red"), no_wrap=True, overflow="crop"))
        self.query_one("#done", Sparkline).data = list(frame.done)
        self.query_one("#failures", Sparkline).data = list(frame.failed)
        self.border_subtitle = f"rates over 10 s, charts {len(frame.done)} s, this host"


class FailedPanel(Panel):
    """Jobs failed for good, newest first, and the selected one's traceback."""

    TITLE = "Failed jobs"
    traceback = ""
    """The selected job's last error as loaded (empty until it arrives)."""
    _wanted: int | None
    """The job whose traceback is wanted (unset until one is selected)."""

    class Selected(Message):
        """The operator moved to failed job ``job_id``: its traceback is wanted."""

        def __init__(self, job_id: int) -> None:
            super().__init__()
            self.job_id = job_id

    def compose(self) -> ComposeResult:
        yield RowTable(Column("id"), Column("job"), Column("queue", 4), Column("pri", 6), Column("tries", 5),
                       Column("failed", 3), Column("error", 2, stretch=True, least=30), id="failed")
        with VerticalScroll(id="traceback-box"):
            yield Static("", id="traceback")

    def show(self, frame: Frame) -> None:
        snap = frame.snapshot
        self._by_key = {str(j.id): j for j in snap.failed}
        self.query_one(RowTable).fill([(k, self._cells(j, frame.now)) for k, j in self._by_key.items()])
        shown = len(snap.failed)
        self.border_title = (f"Failed jobs ({snap.failed_total})" if shown == snap.failed_total
                             else f"Failed jobs (newest {shown} of {snap.failed_total})")
        if not snap.failed:
            self.show_traceback(None, "")
        else:
            self._announce()

    @staticmethod
    def _cells(j: FailedJob, now: datetime) -> tuple:
        return (str(j.id), j.name, stats.queue_label(j.queue), str(j.priority), str(j.attempts),
                age(now - j.failed_at) + " ago", Text(j.error, style="red", overflow="ellipsis", no_wrap=True))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._announce()

    def _announce(self) -> None:
        job = self.selected()
        if job is not None and job.id != getattr(self, "_wanted", None):
            self._wanted = job.id
            self.post_message(self.Selected(job.id))

    def show_traceback(self, job_id: int | None, traceback: str | None) -> None:
        """Show the full last_error of ``job_id`` (ignored when another job is selected now)."""
        if job_id is not None and job_id != getattr(self, "_wanted", None):
            return
        if job_id is None:
            self._wanted = None
        self.traceback = traceback or ""
        self.query_one("#traceback", Static).update(Text(own_frames_first(self.traceback), style="red"))

    async def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        await self.app.run_action("traceback")

    def selected(self) -> FailedJob | None:
        key = self.query_one(RowTable).selected_key()
        return getattr(self, "_by_key", {}).get(key) if key else None
