"""Snapshots of every screen of djctl top, from a fixed clock and fixed data.

The data source here is the only stand-in in the console's tests: a Source that answers
with one fixed Snapshot, so that the pictures never change by themselves. The log is a
real file written with the same fixed clock. Update the pictures after a deliberate
change with: pytest tests/acceptance/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from djctl.daemon.logs import LogWriter
from djctl.queue import lookup
from djctl.queue.stats import FailedJob
from djctl.tui.app import DjctlTop
from djctl.tui.logview import LogPanel
from djctl.tui.model import JobFilter, ProcessRow, QueueRow, Snapshot, Supervision
from djctl.tui.widgets import FailedPanel

NOW = datetime(2026, 11, 22, 10, 4, 5, tzinfo=timezone.utc)
T = NOW.replace(tzinfo=None)
SIZE = (160, 50)
TRACEBACK = """RuntimeError: no such file: /tmp/import-7.csv
Traceback (most recent call last):
  File "/srv/app/djctl/executor.py", line 88, in run
    job.perform()
  File "/srv/app/shop/imports.py", line 12, in perform
    raise FileNotFoundError(f"no such file: {self.path}")
FileNotFoundError: no such file: /tmp/import-7.csv"""


def fixed_snapshot(running: bool = True) -> Snapshot:
    processes = (
        ProcessRow("worker.1", "worker", "railgun", 25794, "up", T - timedelta(minutes=3), "djctl work",
                cpu=12.5, memory=48_300_000, job="ResizePhoto (id=1042)", job_since=T - timedelta(seconds=2),
                progress="42% resizing 3 of 7", job_id=1042),
        ProcessRow("worker.2", "worker", "railgun", 25801, "crashed", T - timedelta(seconds=20), "djctl work"),
        ProcessRow("mail.1", "mail", "railgun", 25810, "up", T - timedelta(hours=2, minutes=5),
                "djctl work --queues mail", cpu=0.3, memory=41_000_000),
        ProcessRow("worker.1", "worker", "bigiron", 311, "up", T - timedelta(days=4, hours=3), "djctl work",
                local=False, stale=True),
    )
    queues = (
        QueueRow(None, 0, 120, 4, 1, 0, T - timedelta(seconds=95)),
        QueueRow(None, 5, 17, 0, 0, 2, T - timedelta(seconds=4)),
        QueueRow("mail", 10, 3, 12, 1, 1, T - timedelta(minutes=12, seconds=3)),
        QueueRow("maintenance", 0, 0, 1, 0, 0, None),
    )
    failed = (
        FailedJob(1077, "ImportCsv", None, 5, 3, T - timedelta(minutes=1),
                  "FileNotFoundError: no such file: /tmp/import-7.csv"),
        FailedJob(1051, "ImportCsv", None, 5, 3, T - timedelta(minutes=9),
                  "FileNotFoundError: no such file: /tmp/import-3.csv"),
        FailedJob(998, "SendNewsletter", "mail", 10, 25, T - timedelta(hours=5),
                  "SMTPServerDisconnected: Connection unexpectedly closed"),
    )
    if running:
        return Snapshot(NOW, Supervision(True, {"worker": 2, "mail": 1}, {"worker": "djctl work"}),
                        processes, queues, failed, 3)
    stopped = tuple(p for p in processes if not p.local)
    return Snapshot(NOW, Supervision(False, note="no supervisor running"), stopped, queues, failed, 3)


@dataclass
class FixedSource:
    """Always the same snapshot; actions are not part of a picture."""

    snap: Snapshot
    log_path: Path | None
    events_path: Path | None = None
    clock: object = lambda: NOW
    description: str = "sqlite:///delayed_jobs.sqlite3"
    filters: list = field(default_factory=list)

    def snapshot(self, flt: JobFilter) -> Snapshot:
        self.filters.append(flt)
        return self.snap

    def traceback(self, job_id: int) -> str | None:
        return TRACEBACK

    def find_jobs(self, flt: JobFilter, limit: int) -> list[lookup.JobRow]:
        return [r for r in FOUND if flt.text.lower() in r.name.lower() + r.error.lower()][:limit]

    def job(self, job_id: int) -> lookup.JobDetail | None:
        r = next(r for r in FOUND if r.id == job_id)
        columns = {"id": r.id, "priority": r.priority, "attempts": r.attempts, "handler": HANDLER,
                   "last_error": TRACEBACK if r.failed_at else None, "run_at": r.run_at, "locked_at": r.locked_at,
                   "locked_by": r.locked_by, "failed_at": r.failed_at, "queue": r.queue, "reoccur_in": None,
                   "cron": None, "last_run_at": None, "schedule_key": None, "created_at": T - timedelta(hours=1),
                   "updated_at": r.run_at}
        return lookup.decode(columns, r.state)

    def scale(self, process_type: str, delta: int) -> str: raise AssertionError("no actions in snapshots")
    def retry(self, ids: Sequence[int]) -> int: raise AssertionError("no actions in snapshots")
    def retry_failed(self, flt: JobFilter) -> int: raise AssertionError("no actions in snapshots")
    def delete(self, ids: Sequence[int]) -> int: raise AssertionError("no actions in snapshots")
    def delete_failed(self, flt: JobFilter) -> int: raise AssertionError("no actions in snapshots")
    def clear_queue(self, queue: str | None) -> int: raise AssertionError("no actions in snapshots")
    def pause_queue(self, queue: str | None) -> str: raise AssertionError("no actions in snapshots")
    def resume_queue(self, queue: str | None) -> str: raise AssertionError("no actions in snapshots")
    def cancel(self, ids: Sequence[int]) -> int: raise AssertionError("no actions in snapshots")


LOG_LINES = 24
HANDLER = '{"job":"shop.imports:ImportCsv","state":{"path":"/tmp/import-7.csv","dry_run":false}}'
FOUND = [
    lookup.JobRow(1042, lookup.State.RUNNING, "ImportCsv", None, 5, 1, T - timedelta(seconds=9),
                  "host:railgun pid:25794", T - timedelta(seconds=2), None, ""),
    lookup.JobRow(1090, lookup.State.READY, "ImportCsv", None, 5, 0, T - timedelta(seconds=4), None, None, None, ""),
    lookup.JobRow(1101, lookup.State.SCHEDULED, "ImportCsv", "mail", 10, 2, T + timedelta(minutes=12), None, None,
                  None, "ConnectionResetError: peer went away"),
    lookup.JobRow(1077, lookup.State.FAILED, "ImportCsv", None, 5, 3, T - timedelta(minutes=1), None, None,
                  T - timedelta(minutes=1), "FileNotFoundError: no such file: /tmp/import-7.csv"),
]


def write_log(path: Path) -> Path:
    """A log whose lines are stamped by the fixed clock: jobs done and failed over the last
    minute, each also an event in the events file beside it (its path returned)."""
    at = [NOW - timedelta(seconds=60)]

    def clock() -> datetime:
        at[0] += timedelta(milliseconds=2500)
        return at[0]

    with LogWriter(path, clock=clock) as log, LogWriter(path.with_name("events.log")) as events:
        original = log.write

        def write(source: str, proc: str, message: str) -> None:
            original(source, proc, message)
            for outcome, word in (("completed", " COMPLETED"), ("failed", " FAILED ")):
                if word in message:
                    events.append(json.dumps({"event": outcome, "job_id": 1, "class": "Job", "queue": None,
                                              "attempts": 0, "run_time": 0.1, "ts": at[0].isoformat(),
                                              "process": proc, "host": "railgun"}))

        log.write = write  # type: ignore[method-assign]
        log.write("djctl", "worker.1", "State changed from starting to up")
        log.write("app", "worker.1", "*** Starting job worker host:railgun pid:25794")
        for i in range(LOG_LINES - 4):
            if i % 5 == 3:
                log.write("app", "worker.1", f"[Worker(host:railgun pid:25794)] Job ImportCsv (id={1040 + i}) "
                          "FAILED (2 prior attempts) with FileNotFoundError: no such file")
            else:
                proc = "mail.1" if i % 4 == 0 else "worker.1"
                log.write("app", proc, f"[Worker(host:railgun pid:25794)] Job ResizePhoto (id={1040 + i}) COMPLETED")
        log.write("djctl", "worker.2", "Process exited with status 1")
        log.write("djctl", "worker.2", "State changed from up to crashed")
    return path.with_name("events.log")


@pytest.fixture
def make_app(tmp_path):
    def make(running: bool = True, paused: frozenset[str] = frozenset()) -> DjctlTop:
        path = tmp_path / "djctl.log"
        events = write_log(path)
        snap = replace(fixed_snapshot(running), paused=paused)
        return DjctlTop(FixedSource(snap, path, events), clock=lambda: NOW, refresh=0.5, window=60)
    return make


def settled(extra=None):
    """run_before: wait (with a deadline) until the data, the log and the traceback are shown."""
    async def run_before(pilot) -> None:
        app = pilot.app
        deadline = time.monotonic() + 15
        while not (app.loads and app.dashboard.query_one(LogPanel).count == LOG_LINES
                   and "Traceback" in app.dashboard.query_one(FailedPanel).traceback):
            assert time.monotonic() < deadline, "the console did not settle"
            await pilot.pause(0.05)
        await pilot.pause(0.6)  # one more refresh and log drain: nothing may change any more
        if extra is not None:
            await extra(pilot)
        for widget in app.screen.query("Input"):
            widget.cursor_blink = False
        await pilot.pause(0.1)
    return run_before


async def _until(pilot, predicate) -> None:
    deadline = time.monotonic() + 15
    while not predicate():
        assert time.monotonic() < deadline
        await pilot.pause(0.05)


def test_dashboard(snap_compare, make_app):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settled())


def screen_text(app) -> str:
    """What the terminal shows, as text (the snapshot's SVG without its markup)."""
    svg = app.export_screenshot()
    rows: dict[str, list[str]] = {}
    for y, chunk in re.findall(r'<text [^>]*y="([0-9.]+)"[^>]*>([^<]*)</text>', svg):
        rows.setdefault(y, []).append(html.unescape(chunk).replace("\xa0", " "))
    return "\n".join("".join(parts) for _, parts in sorted(rows.items(), key=lambda kv: float(kv[0])))


# What an operator needs first, at any size: the supervisor's state, every process type's
# count, the deepest queues, the failed count and the newest log lines.
FIRST_SCREEN = ["supervisor running", "worker=2 mail=1", "3 failed", "default      0    120", "mail ",
                "Failed jobs (3)", "State changed from up to crashed", "Process exited with status 1",
                "? Help", "q Quit"]


@pytest.mark.parametrize("size", [(80, 24), (120, 35), (200, 50)], ids=["80x24", "120x35", "200x50"])
def test_dashboard_at_every_size(snap_compare, make_app, size):
    async def everything_shown(pilot):
        shown = screen_text(pilot.app)
        missing = [want for want in FIRST_SCREEN if want not in shown]
        assert not missing, f"at {size[0]}x{size[1]} the first screen lacks {missing}:\n{shown}"
    assert snap_compare(make_app(), terminal_size=size, run_before=settled(everything_shown))


def test_dashboard_without_a_supervisor(snap_compare, make_app):
    assert snap_compare(make_app(running=False), terminal_size=SIZE, run_before=settled())


def test_help_screen(snap_compare, make_app):
    async def help(pilot):
        await pilot.press("question_mark")
        await _until(pilot, lambda: type(pilot.app.screen).__name__ == "HelpScreen")
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settled(help))


def test_confirm_delete_with_cancel_focused(snap_compare, make_app):
    async def confirm(pilot):
        await pilot.press("d")
        await _until(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmScreen")
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settled(confirm))


def test_filter_screen(snap_compare, make_app):
    async def filter(pilot):
        await pilot.press("slash")
        await _until(pilot, lambda: type(pilot.app.screen).__name__ == "FilterScreen")
        await pilot.press(*"mail", "tab", *"Newsletter")
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settled(filter))


def test_filter_screen_lists_matching_jobs_of_every_state(snap_compare, make_app):
    async def search(pilot):
        await pilot.press("slash")
        await _until(pilot, lambda: type(pilot.app.screen).__name__ == "FilterScreen")
        await pilot.press("tab", "tab", *"import")
        await _until(pilot, lambda: "4 jobs matching" in str(pilot.app.screen.query_one("#found-title").render()))
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settled(search))


def test_job_detail_view(snap_compare, make_app):
    async def detail(pilot):
        await pilot.press("slash")
        await _until(pilot, lambda: type(pilot.app.screen).__name__ == "FilterScreen")
        await _until(pilot, lambda: "4 jobs matching" in str(pilot.app.screen.query_one("#found-title").render()))
        await pilot.press("tab", "tab", "tab", "down", "down", "down", "enter")
        await _until(pilot, lambda: "Traceback" in str(pilot.app.screen.query_one("#job-detail").render()))
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settled(detail))


def test_log_screen_filtered_by_type(snap_compare, make_app):
    async def log(pilot):
        await pilot.press("l")
        await _until(pilot, lambda: type(pilot.app.screen).__name__ == "LogScreen")
        await pilot.press("p", *"worker", "enter")
        lines = lambda: pilot.app.screen.query_one(LogPanel).shown  # noqa: E731
        await _until(pilot, lambda: len(lines()) == LOG_LINES - 4)  # all but mail.1's four
        await pilot.pause(0.4)
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settled(log))


def test_command_palette(snap_compare, make_app):
    async def palette(pilot):
        await pilot.press("ctrl+p")
        await _until(pilot, lambda: type(pilot.app.screen).__name__ == "CommandPalette")
        await pilot.press(*"retry")
        await pilot.pause(0.5)
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settled(palette))


def test_dashboard_with_a_paused_queue(snap_compare, make_app):
    assert snap_compare(make_app(paused=frozenset({"mail"})), terminal_size=SIZE, run_before=settled())


def test_confirm_cancel_of_a_running_job_with_cancel_focused(snap_compare, make_app):
    async def confirm(pilot):
        pilot.app.dashboard.query_one("#processes").focus()
        await pilot.press("k")
        await _until(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmScreen")
        assert pilot.app.screen.focused.id == "cancel"
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settled(confirm))
