"""djctl top driven by Pilot: every key, checked in the database or the formation afterwards.

Runs the real console (DatabaseSource) on SQLite and PostgreSQL; `+`/`-` talk to a real
supervisor started with `djctl up`.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timezone

import psutil
import pytest
from sqlalchemy import text

import djctl
from djctl import api, config
from djctl.daemon import control
from djctl.daemon.logs import LogWriter
from djctl.tui.app import ConfirmScreen, DjctlTop, FilterScreen, HelpScreen, LogScreen
from djctl.tui.logview import LogPanel
from djctl.tui.sources import DatabaseSource
from djctl.tui.widgets import FailedPanel, ProcessPanel, QueuePanel
from djctl.worker.worker import Worker
from tests.jobs import Fail, StuckInSyscall, Touch
from tests.support.app import App, kill_processes_in
from tests.support.commands import djctl_cmd
from tests.support.rows import count
from tests.support.waiting import wait_for

SIZE = (160, 50)


def pilot_test(fn):
    """Run an async test (with its fixtures) in a fresh event loop: no async plugin needed."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        asyncio.run(fn(*args, **kwargs))
    return run


@pytest.fixture
def db(db_kind: str, db_url: str) -> str:
    if db_kind == "mysql":
        pytest.skip("the console is accepted on SQLite and PostgreSQL")
    return db_url


def fail_jobs(*jobs: tuple[str, str | None]) -> None:
    """Enqueue a Fail job per (message, queue) and let a real worker fail each for good."""
    for message, queue in jobs:
        djctl.enqueue(Fail(message), queue=queue)
    ok, failed = Worker(max_attempts=1, sleep_delay=0.1, log=lambda line: None).work_off(num=100)
    assert failed == len(jobs)


def failed_ids(url: str) -> set[int]:
    with api.engine(url).connect() as conn:
        return set(conn.scalars(text("SELECT id FROM delayed_jobs WHERE failed_at IS NOT NULL")))


async def until(pilot, predicate: Callable[[], object], timeout: float = 15.0, message: str = "condition"):
    """Let the app run until ``predicate()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await pilot.pause(0.03)


def console() -> DjctlTop:
    return DjctlTop(DatabaseSource(config.current()), refresh=0.2)


async def loaded(pilot, app: DjctlTop, predicate: Callable[[], object] = lambda: True) -> None:
    """Wait for a refresh that satisfies ``predicate`` (after anything done before)."""
    start = app.loads
    await until(pilot, lambda: app.loads > start + 1 and predicate(), message="a refresh")


def notes(app: DjctlTop) -> list[str]:
    return [n.message for n in app._notifications]


@pilot_test
async def test_r_retries_the_selected_failed_job(db):
    fail_jobs(("one", None), ("two", None))
    newest = max(failed_ids(db))
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, lambda: app.query_one(FailedPanel).selected())
        assert app.query_one(FailedPanel).selected().id == newest
        await pilot.press("r")
        await until(pilot, lambda: newest not in failed_ids(db), message="the job retried")
        assert len(failed_ids(db)) == 1
        await until(pilot, lambda: "Retrying 1 job." in notes(app))
    assert count(db, "id = :id AND attempts = 0 AND locked_at IS NULL", id=newest) == 1


@pilot_test
async def test_R_retries_all_failed_jobs_shown_by_the_filter(db):
    fail_jobs(("a1", "alpha"), ("a2", "alpha"), ("b1", "beta"))
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, FilterScreen))
        await pilot.press(*"alpha", "enter")
        await loaded(pilot, app, lambda: app.snapshot.failed_total == 2)
        assert {q.queue for q in app.snapshot.queues} == {"alpha"}
        await pilot.press("R")
        await until(pilot, lambda: count(db, "failed_at IS NOT NULL") == 1, message="alpha retried")
    assert count(db, "failed_at IS NOT NULL AND queue = 'beta'") == 1


@pilot_test
async def test_d_deletes_the_selected_job_only_when_confirmed(db):
    fail_jobs(("one", None), ("two", None))
    newest = max(failed_ids(db))
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, lambda: app.query_one(FailedPanel).selected())
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert app.screen.focused.id == "cancel"
        await pilot.press("enter")  # Cancel is the default
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.3)
        assert count(db) == 2
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("tab", "enter")
        await until(pilot, lambda: count(db) == 1, message="the job deleted")
    assert newest not in failed_ids(db)


@pilot_test
async def test_D_deletes_all_failed_jobs_shown(db):
    fail_jobs(("x", None), ("y", None), ("z", "other"))
    djctl.enqueue(Touch("/dev/null", "keep"))
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, lambda: app.snapshot.failed_total == 3)
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, FilterScreen))
        await pilot.press("tab", *"fail", "enter")  # job class
        await loaded(pilot, app)
        await pilot.press("D")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Delete all 3 failed jobs shown matching class=fail?" in str(app.screen.question)
        await pilot.press("escape")
        await pilot.pause(0.3)
        assert count(db) == 4
        await pilot.press("D")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("tab", "enter")
        await until(pilot, lambda: count(db, "failed_at IS NOT NULL") == 0, message="failed jobs deleted")
    assert count(db) == 1


@pilot_test
async def test_c_clears_the_selected_queue_after_confirmation(db):
    for i in range(3):
        djctl.enqueue(Touch("/dev/null", str(i)), queue="mail")
    djctl.enqueue(Touch("/dev/null", "default"))
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, lambda: len(app.snapshot.queues) == 2)
        table = app.query_one("#queues")
        table.focus()  # the deepest queue first: mail (3 ready), then default (1)
        assert app.query_one(QueuePanel).selected().queue == "mail"
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert app.screen.focused.id == "cancel"
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert count(db, "queue = 'mail'") == 3
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("tab", "enter")
        await until(pilot, lambda: count(db, "queue = 'mail'") == 0, message="mail cleared")
        await loaded(pilot, app, lambda: [q.queue for q in app.snapshot.queues] == ["default"])
    assert count(db) == 1


@pilot_test
async def test_filter_narrows_queues_and_failed_jobs_by_text(db):
    fail_jobs(("disk full", None), ("network down", None))
    djctl.enqueue(Touch("/dev/null", "k"), queue="mail")
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, lambda: app.snapshot.failed_total == 2)
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, FilterScreen))
        await pilot.press("tab", "tab", *"NETWORK", "enter")
        await loaded(pilot, app, lambda: app.snapshot.failed_total == 1)
        assert [j.error for j in app.snapshot.failed] == ["RuntimeError: network down"]
        assert 'filter: text="NETWORK"' in str(app.query_one("#status").render())
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, FilterScreen))
        await pilot.press(*"default", "enter")
        await loaded(pilot, app, lambda: [q.queue for q in app.snapshot.queues] == ["default"])


@pilot_test
async def test_selecting_a_failed_job_shows_its_full_traceback(db):
    fail_jobs(("first", None), ("second", None))
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, lambda: app.query_one(FailedPanel).selected())
        shown = lambda: str(app.query_one("#traceback").render())  # noqa: E731
        await until(pilot, lambda: "Traceback" in shown() and "second" in shown(), message="the traceback")
        app.query_one("#failed").focus()
        await pilot.press("down")
        await until(pilot, lambda: "first" in shown(), message="the other traceback")


@pilot_test
async def test_l_shows_the_log_filtered_like_logs_p(db):
    path = DatabaseSource(config.current()).log_path
    with LogWriter(path) as log:
        log.write("app", "worker.1", "from worker one")
        log.write("app", "mail.1", "from mail")
        log.write("djctl", "worker.2", "State changed from starting to up")
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogScreen))
        lines = lambda: app.screen.query_one(LogPanel).shown  # noqa: E731
        await until(pilot, lambda: len(lines()) == 3, message="the whole log")
        await pilot.press("p")
        await until(pilot, lambda: app.focused is not None and app.focused.id == "proc-filter",
                    message="the -p input")
        await pilot.press(*"worker", "enter")
        await until(pilot, lambda: len(lines()) == 2 and all("worker." in ln for ln in lines()),
                    message="only the worker lines")
        with LogWriter(path) as log:
            log.write("app", "worker.3", "later")
            log.write("app", "mail.1", "later mail")
        await until(pilot, lambda: len(lines()) == 3 and lines()[-1].endswith("later"), message="the new line")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, LogScreen))


@pilot_test
async def test_help_and_quit(db):
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("q")
        await until(pilot, lambda: app._exit, message="the app to quit")


@pilot_test
async def test_without_a_supervisor_processes_are_read_only_from_the_database(db):
    now = api.utc_naive(api.now())
    with api.engine(db).begin() as conn:
        conn.execute(text(
            "INSERT INTO djctl_processes (host, pid, name, type, supervisor_pid, state, command, started_at, "
            "heartbeat_at) VALUES ('elsewhere', 4242, 'worker.1', 'worker', 4241, 'up', 'djctl work', :t, :t)"),
            {"t": now})
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, lambda: app.snapshot.processes)
        assert "no supervisor running" in str(app.query_one("#process-note").render())
        proc = app.query_one(ProcessPanel).selected()
        assert (proc.host, proc.name, proc.state) == ("elsewhere", "worker.1", "up")
        await pilot.press("plus")
        await until(pilot, lambda: any("no supervisor running" in n for n in notes(app)))


@pytest.fixture
def supervisor(db, djctl_env, tmp_path):
    """A real supervisor (djctl up) with one worker, and its control client; brought down afterwards."""
    up = subprocess.run(djctl_cmd("up", "--formation", "worker=1"), env=djctl_env, cwd=tmp_path,
                        capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    try:
        yield control.Client(config.current().state_dir)
    finally:
        try:
            subprocess.run(djctl_cmd("down"), env=djctl_env, cwd=tmp_path, capture_output=True, timeout=60)
        finally:
            kill_processes_in(tmp_path)


def _running(client: control.Client, n: int) -> bool:
    """The formation says n workers and n of them are up."""
    ps = client.request("ps")
    return ps["formation"].get("worker") == n and sum(
        p["state"] == "up" for p in ps["processes"] if p["type"] == "worker") == n


@pilot_test
async def test_plus_and_minus_scale_the_selected_process_type(supervisor):
    wait_for(lambda: _running(supervisor, 1), timeout=30, message="worker.1 up")
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, lambda: app.query_one(ProcessPanel).selected())
        assert app.query_one(ProcessPanel).selected().type == "worker"
        await pilot.press("plus")
        await until(pilot, lambda: _running(supervisor, 2), timeout=30, message="two workers up")
        await until(pilot, lambda: any("now running worker at 2" in n for n in notes(app)))
        await loaded(pilot, app, lambda: len(app.snapshot.processes) == 2)
        await pilot.press("minus")
        await until(pilot, lambda: supervisor.request("ps")["formation"] == {"worker": 1}, timeout=30,
                    message="back to one worker")


@pilot_test
async def test_a_database_error_shows_in_the_status_line_and_the_console_recovers(db):
    djctl.enqueue(Touch("/dev/null", "x"))
    app = console()
    status = lambda: str(app.query_one("#status").render())  # noqa: E731
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, lambda: app.snapshot.queues)
        with api.engine(db).begin() as conn:
            conn.exec_driver_sql("ALTER TABLE delayed_jobs RENAME TO delayed_jobs_away")
        try:
            await until(pilot, lambda: "refresh failed" in status(), message="the error shown")
            assert app.is_running
        finally:
            with api.engine(db).begin() as conn:
                conn.exec_driver_sql("ALTER TABLE delayed_jobs_away RENAME TO delayed_jobs")
        await until(pilot, lambda: "refresh failed" not in status(), message="the error gone")


@pilot_test
async def test_the_command_palette_runs_the_same_actions(db):
    fail_jobs(("one", None), ("two", None))
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, lambda: app.snapshot.failed_total == 2)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette")
        await pilot.press(*"retry all")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: count(db, "failed_at IS NOT NULL") == 0, message="all retried")


@pilot_test
async def test_a_real_workers_outcomes_are_what_the_throughput_counts(db, djctl_env, tmp_path):
    """The console's throughput counts the outcomes a real worker under ``djctl up``
    reports — through the events the two share in code, not a copied log line."""
    app = App(tmp_path / "app", djctl_env, db, procfile="worker: djctl work\n", DJ_MAX_ATTEMPTS="1")
    try:
        app.run("up")
        out = tmp_path / "out"
        djctl.enqueue_many([Touch(str(out), str(i)) for i in range(5)])
        djctl.enqueue(Fail("for the chart"))
        wait_for(lambda: count(db) == 1 and count(db, "failed_at IS NOT NULL") == 1, 60,
                 message="five jobs done and one failed for good")
        top = DjctlTop(DatabaseSource(config.current().replace(state_dir=app.state)), refresh=0.2)
        async with top.run_test(size=SIZE) as pilot:
            def counted() -> tuple[int, int]:
                done, failed = top.throughput.series(datetime.now(timezone.utc))
                return sum(done), sum(failed)
            await until(pilot, lambda: counted() == (5, 1), timeout=30,
                        message="5 completed and 1 failed in the console's throughput")
        app.run("down")
    finally:
        app.kill_everything()


@pilot_test
async def test_jobs_waiting_on_a_key_show_as_waiting_with_the_key(db):
    from djctl.queue.gates import Gates
    from tests.support.rows import utcnow

    djctl.enqueue_many([Touch("/dev/null", f"a{i}") for i in range(4)], concurrency_key="account:42")
    djctl.enqueue(Touch("/dev/null", "plain"))
    engine = api.engine(db)
    with engine.begin() as conn:  # one job of the key runs elsewhere: its only slot is held
        assert len(Gates(engine.dialect.name, "host:elsewhere pid:1").claim(conn, 5, utcnow())) == 1
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(QueuePanel)
        await loaded(pilot, app, lambda: "waiting" in str(panel.border_subtitle))
        assert str(panel.border_subtitle).startswith("3 waiting on account:42 · total: 1 ready")
        row = panel.query_one("RowTable").get_row_at(0)
        assert [str(c) for c in row[:5]] == ["default", "0", "1+3w", "0", "1"]


def paused_names(url: str) -> set[str]:
    with api.engine(url).connect() as conn:
        return set(conn.scalars(text("SELECT queue FROM djctl_paused_queues")))


@pilot_test
async def test_p_pauses_the_selected_queue_and_p_again_resumes_it(db):
    for i in range(3):
        djctl.enqueue(Touch("/dev/null", str(i)), queue="mail")
    djctl.enqueue(Touch("/dev/null", "default"))
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, lambda: len(app.snapshot.queues) == 2)
        app.query_one("#queues").focus()  # the deepest first: mail
        assert app.query_one(QueuePanel).selected().queue == "mail"
        await pilot.press("p")
        await until(pilot, lambda: paused_names(db) == {"mail"}, message="mail paused")
        await until(pilot, lambda: any("Paused queue mail" in n for n in notes(app)))
        await loaded(pilot, app, lambda: app.snapshot.is_paused("mail"))
        assert "mail paused" in str(app.query_one("#queues").get_row_at(0)[0])
        assert not app.snapshot.is_paused(None)
        await pilot.press("p")
        await until(pilot, lambda: paused_names(db) == set(), message="mail resumed")
        await until(pilot, lambda: any("Resumed queue mail" in n for n in notes(app)))
    assert count(db, "queue = 'mail'") == 3  # nothing else changed


@pilot_test
async def test_k_cancels_the_selected_processes_running_job_only_when_confirmed(supervisor, db, tmp_path):
    out = tmp_path / "out"
    stuck = djctl.enqueue(StuckInSyscall(str(out)))
    started = wait_for(lambda: out.exists() and out.read_text().split(), timeout=30, message="the job to start")
    executor = int(started[1])
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app, lambda: getattr(app.query_one(ProcessPanel).selected(), "job_id", None) == stuck)
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert app.screen.focused.id == "cancel"
        assert f"Cancel job StuckInSyscall (id={stuck}) running in worker.1" in str(app.screen.question)
        await pilot.press("enter")  # Cancel is the default: nothing happens
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.3)
        assert count(db, "id = :i AND failed_at IS NULL", i=stuck) == 1
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("tab", "enter")
        await until(pilot, lambda: count(db, "id = :i AND failed_at IS NOT NULL", i=stuck) == 1,
                    message="the job cancelled")
        await until(pilot, lambda: f"Cancelled job {stuck}." in notes(app))
    wait_for(lambda: not psutil.pid_exists(executor) or psutil.Process(executor).status() == psutil.STATUS_ZOMBIE,
             timeout=30, message="the executor killed")
    assert count(db, "id = :i AND last_error LIKE '%(djctl top)%' AND locked_by IS NULL", i=stuck) == 1
