"""The console's ``/``: jobs of every state that match, and a job's detail view, on the real database."""

from __future__ import annotations

from datetime import timedelta

import pytest

import djctl
from djctl.tui.app import FilterScreen, JobScreen
from djctl.tui.table import RowTable
from tests.acceptance.test_tui_app import SIZE, console, db, fail_jobs, loaded, pilot_test, until  # noqa: F401
from tests.jobs import Touch


def _listed(app) -> list[tuple[str, str]]:
    table = app.screen.query_one("#found", RowTable)
    return [(key, str(cells[1])) for key, cells in table._rows]


@pytest.mark.usefixtures("db")
@pilot_test
async def test_slash_finds_jobs_in_every_state_and_enter_opens_one():
    fail_jobs(("pineapple pizza refused", None))
    ready = djctl.enqueue(Touch("/dev/null", "pineapple"), queue="mail")
    later = djctl.enqueue(Touch("/dev/null", "pineapple later"), run_at=djctl.now() + timedelta(days=1))
    djctl.enqueue(Touch("/dev/null", "banana"))
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, FilterScreen))
        await until(pilot, lambda: len(_listed(app)) == 4, message="every job listed before any filter")
        await pilot.press("tab", "tab", *"PINEAPPLE")
        await until(pilot, lambda: [s for _, s in _listed(app)] == ["ready", "scheduled", "failed"],
                    message="the three pineapple jobs, ready, scheduled and failed")
        assert [k for k, _ in _listed(app)][:2] == [str(ready), str(later)]
        assert "3 jobs matching text=\"PINEAPPLE\"" in str(app.screen.query_one("#found-title").render())

        await pilot.press("tab")  # into the list
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen), message="the detail view")
        shown = lambda: str(app.screen.query_one("#job-detail").render())  # noqa: E731
        await until(pilot, lambda: "class: tests.jobs:Touch" in shown(), message="the job read")
        assert f"Job {later} (Touch): scheduled" in shown() and '"key": "pineapple later"' in shown()
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, FilterScreen))

        await pilot.press("shift+tab", "ctrl+a", "ctrl+k", *str(ready))  # an id finds that job alone
        await until(pilot, lambda: [k for k, _ in _listed(app)] == [str(ready)], message="the job by id")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, FilterScreen))


@pytest.mark.usefixtures("db")
@pilot_test
async def test_the_detail_view_of_a_failed_job_shows_its_whole_traceback():
    fail_jobs(("the disk is full", None))
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, FilterScreen))
        await until(pilot, lambda: len(_listed(app)) == 1)
        await pilot.press("tab", "tab", "tab", "enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        shown = lambda: str(app.screen.query_one("#job-detail").render())  # noqa: E731
        await until(pilot, lambda: "Traceback (most recent call last):" in shown(), message="the traceback")
        assert "last_error:\nRuntimeError: the disk is full" in shown() and ": failed" in shown()
