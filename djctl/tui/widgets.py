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
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Log, Sparkline, Static

from djctl.queue.stats import FailedJob
from djctl.tui.logtail import LogFollower
from djctl.tui.sources import ProcessRow, QueueRow, Snapshot, queue_label


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
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
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


class RowTable(DataTable):
    """A row-cursor table refilled from keyed rows, keeping the cursor on the same key."""

    def __init__(self, *columns: str, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._columns = columns
        self._rows: list[tuple[str, tuple]] = []

    def on_mount(self) -> None:
        self.add_columns(*self._columns)

    def fill(self, rows: list[tuple[str, tuple]]) -> None:
        if rows == self._rows:
            return
        keep = self.selected_key()
        self._rows = rows
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        keys = [k for k, _ in rows]
        if keep in keys:
            self.move_cursor(row=keys.index(keep), animate=False)

    def selected_key(self) -> str | None:
        if not self._rows or not (0 <= self.cursor_row < len(self._rows)):
            return None
        return self._rows[self.cursor_row][0]


class ProcessPanel(Panel):
    TITLE = "Processes"

    def compose(self) -> ComposeResult:
        yield Static("", id="process-note")
        yield RowTable("process", "host", "pid", "state", "uptime", "cpu", "mem", "job", "running for",
                       id="processes")

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
                "" if p.cpu is None else f"{p.cpu:.1f}%", size(p.memory), p.job or "",
                age(_since(now, p.job_since)))

    def selected(self) -> ProcessRow | None:
        key = self.query_one(RowTable).selected_key()
        return getattr(self, "_by_key", {}).get(key) if key else None


class QueuePanel(Panel):
    TITLE = "Queues"

    def compose(self) -> ComposeResult:
        yield RowTable("queue", "priority", "ready", "scheduled", "running", "failed", "oldest ready", id="queues")

    def show(self, frame: Frame) -> None:
        rows = frame.snapshot.queues
        self._by_key = {f"{queue_label(q.queue)}|{q.priority}": q for q in rows}
        self.query_one(RowTable).fill([
            (k, (queue_label(q.queue), str(q.priority), str(q.ready), str(q.scheduled), str(q.running),
                 Text(str(q.failed), style="red" if q.failed else ""), age(_since(frame.now, q.oldest_ready))))
            for k, q in self._by_key.items()
        ])
        total = [sum(getattr(q, f) for q in rows) for f in ("ready", "scheduled", "running", "failed")]
        self.border_subtitle = "total: {} ready · {} scheduled · {} running · {} failed".format(*total)

    def selected(self) -> QueueRow | None:
        key = self.query_one(RowTable).selected_key()
        return getattr(self, "_by_key", {}).get(key) if key else None


class ThroughputPanel(Panel):
    TITLE = "Throughput"

    def compose(self) -> ComposeResult:
        yield Static("", id="rates")
        yield Static("done", classes="spark-label")
        yield Sparkline([], id="done")
        yield Static("failed", classes="spark-label")
        yield Sparkline([], id="failures")

    def show(self, frame: Frame) -> None:
        done, failed = frame.rates
        self.query_one("#rates", Static).update(
            Text.assemble(("done ", ""), (f"{done:.1f}/s", "bold green"), ("   failed ", ""),
                          (f"{failed:.1f}/s", "bold red"), ("   (last 10 s)", "dim")))
        self.query_one("#done", Sparkline).data = list(frame.done)
        self.query_one("#failures", Sparkline).data = list(frame.failed)
        self.border_subtitle = f"last {len(frame.done)} s, this host"


class FailedPanel(Panel):
    TITLE = "Failed jobs"

    class Selected(Message):
        """The operator moved to failed job ``job_id``: its traceback is wanted."""

        def __init__(self, job_id: int) -> None:
            super().__init__()
            self.job_id = job_id

    def compose(self) -> ComposeResult:
        yield RowTable("id", "job", "queue", "priority", "attempts", "failed", "error", id="failed")
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
        return (str(j.id), j.name, queue_label(j.queue), str(j.priority), str(j.attempts),
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
        self.query_one("#traceback", Static).update(Text(traceback or "", style="red"))

    def selected(self) -> FailedJob | None:
        key = self.query_one(RowTable).selected_key()
        return getattr(self, "_by_key", {}).get(key) if key else None


class LogPanel(Panel):
    """The log's tail; lines are pushed in by :meth:`write`, never read here."""

    TITLE = "Log"

    def __init__(self, keep: int = 1000, id: str | None = None) -> None:
        super().__init__(id=id)
        self.keep = keep

    def compose(self) -> ComposeResult:
        yield Log(max_lines=self.keep, id="log-lines")

    def attach(self, follower: LogFollower, filter_text: str = "") -> None:
        """Show what ``follower`` (running elsewhere) reads from now on, instead of what was shown."""
        self._follower, self._filter_text = follower, filter_text
        self.query_one(Log).clear()
        self._drain()

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(0.25, self._drain)

    def _drain(self) -> None:
        follower = getattr(self, "_follower", None)
        if follower is None:
            return
        self.write(follower.take())
        self.border_subtitle = (f"-p {self._filter_text} · " if self._filter_text else "") + follower.status

    def write(self, lines: Sequence[str]) -> None:
        if lines:
            self.query_one(Log).write_lines(lines)

    def show(self, frame: Frame) -> None:
        pass  # the log arrives through its follower, as fast as it is written
