"""djctl top's details, driven by Pilot on fixed data (no database, no process): a delete
never targets a row out of sight, throughput's errors are not failed jobs, the delete-all
question's grammar, and column widths that follow the rows shown."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from djctl.queue.stats import FailedJob
from djctl.tui.app import DjctlTop
from djctl.tui.dialogs import ConfirmScreen
from djctl.tui.model import JobFilter, ProcessRow, Snapshot, Supervision
from djctl.tui.table import RowTable
from djctl.tui.widgets import FailedPanel

NOW = datetime(2026, 11, 22, 10, 4, 5, tzinfo=timezone.utc)
T = NOW.replace(tzinfo=None)


def pilot_test(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        asyncio.run(fn(*args, **kwargs))
    return run


def failures(ids: range) -> tuple[FailedJob, ...]:
    """Failed jobs, newest (highest id) first, as the console lists them."""
    return tuple(FailedJob(i, "ImportCsv", None, 0, 1, T - timedelta(seconds=1000 - i), f"RuntimeError: boom {i}")
                 for i in sorted(ids, reverse=True))


@dataclass
class ChangingSource:
    """Answers with ``snap``, which a test replaces between refreshes; records actions."""

    snap: Snapshot
    log_path: Path | None = None
    events_path: Path | None = None
    clock: object = lambda: NOW
    description: str = "sqlite:///fixed.sqlite3"
    deleted: list = field(default_factory=list)

    def snapshot(self, flt: JobFilter) -> Snapshot:
        return self.snap

    def traceback(self, job_id: int) -> str | None:
        return f"RuntimeError: boom {job_id}"

    def delete(self, ids: Sequence[int]) -> int:
        self.deleted.append(list(ids))
        return len(ids)

    def scale(self, process_type: str, delta: int) -> str: raise AssertionError
    def retry(self, ids: Sequence[int]) -> int: raise AssertionError
    def retry_failed(self, flt: JobFilter) -> int: raise AssertionError
    def delete_failed(self, flt: JobFilter) -> int: raise AssertionError
    def clear_queue(self, queue: str | None) -> int: raise AssertionError


def snapshot(failed=(), processes=()) -> Snapshot:
    return Snapshot(NOW, Supervision(True, {"worker": 1}, {"worker": "djctl work"}), tuple(processes), (),
                    tuple(failed), len(failed))


async def until(pilot, predicate, message: str = "condition", timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {message}"
        await pilot.pause(0.05)


async def refreshed(pilot, app: DjctlTop, predicate=lambda: True) -> None:
    start = app.loads
    await until(pilot, lambda: app.loads > start + 1 and predicate(), "a refresh")
    await pilot.pause(0.2)


@pilot_test
async def test_a_delete_never_targets_a_job_out_of_sight():
    source = ChangingSource(snapshot(failures(range(401, 441))))
    app = DjctlTop(source, clock=lambda: NOW, refresh=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, app)
        table = app.dashboard.query_one("#failed", RowTable)
        table.focus()
        await pilot.press("down", "down")
        chosen = app.dashboard.query_one(FailedPanel).selected().id
        assert chosen == 438
        source.snap = snapshot(failures(range(401, 471)))  # 30 new failures above it
        await refreshed(pilot, app, lambda: table.row_count == 70)
        await until(pilot, table.cursor_in_view, "the selected row scrolled into view")
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert app.screen.question.startswith(f"Delete job {chosen} ")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.dashboard, "the question dismissed")
        # Scrolled away by hand, the selection is out of sight: d refuses rather than guess.
        table.scroll_to(y=0, animate=False)
        await until(pilot, lambda: not table.cursor_in_view(), "the selection out of sight")
        await pilot.press("d")
        await until(pilot, lambda: any("off screen" in str(n.message) for n in app._notifications), "the refusal")
        assert not isinstance(app.screen, ConfirmScreen)
    assert source.deleted == []


@pilot_test
async def test_throughput_says_errors_where_the_rest_says_failed():
    app = DjctlTop(ChangingSource(snapshot(failures(range(1, 4)))), clock=lambda: NOW, refresh=0.1)
    async with app.run_test(size=(120, 35)) as pilot:
        await refreshed(pilot, app)
        rates = str(app.dashboard.query_one("#rates").render())
        labels = [str(w.render()) for w in app.dashboard.query(".spark-label")]
        assert "errors" in rates and "failed" not in rates
        assert labels == ["done", "errors"]
        assert app.dashboard.query_one(FailedPanel).border_title == "Failed jobs (3)"


@pilot_test
async def test_delete_all_asks_in_good_grammar():
    source = ChangingSource(snapshot(failures(range(7, 8))))
    app = DjctlTop(source, clock=lambda: NOW, refresh=0.1)
    async with app.run_test(size=(120, 35)) as pilot:
        await refreshed(pilot, app)
        await pilot.press("D")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert app.screen.question == "Delete the 1 failed job shown?"
        await pilot.press("escape")
        source.snap = snapshot(failures(range(7, 10)))
        await refreshed(pilot, app, lambda: app.snapshot.failed_total == 3)
        await pilot.press("D")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert app.screen.question == "Delete all 3 failed jobs shown?"


@pilot_test
async def test_column_widths_shrink_after_a_process_leaves():
    short = ProcessRow("worker.1", "worker", "railgun", 101, "up", T, "djctl work")
    long = ProcessRow("worker.2", "worker", "railgun", 102, "up", T, "djctl work",
                      job="ResizeEveryPhotoInTheCatalogueTwice (id=123456)", job_since=T)
    source = ChangingSource(snapshot(processes=[short, long]))
    app = DjctlTop(source, clock=lambda: NOW, refresh=0.1)
    async with app.run_test(size=(200, 50)) as pilot:
        await refreshed(pilot, app)
        table = app.dashboard.query_one("#processes", RowTable)

        def job_width() -> int:
            return next(c.width for c in table.columns.values() if str(c.label) == "job")
        assert job_width() == len(long.job)
        source.snap = snapshot(processes=[short, replace(long, state="down", pid=None, job=None)])
        await refreshed(pilot, app, lambda: job_width() < len(long.job))
        assert job_width() == len("job")


@pilot_test
async def test_enter_on_a_failed_job_shows_its_traceback_full_screen():
    app = DjctlTop(ChangingSource(snapshot(failures(range(1, 4)))), clock=lambda: NOW, refresh=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await refreshed(pilot, app)
        app.dashboard.query_one("#failed", RowTable).focus()
        await until(pilot, lambda: "boom 3" in app.dashboard.query_one(FailedPanel).traceback, "the traceback")
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "TracebackScreen", "the traceback screen")
        assert "boom 3" in str(app.screen.query_one("#full-traceback").render())
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.dashboard, "the dashboard again")
