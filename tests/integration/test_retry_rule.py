"""One retry rule, three front ends: ``djctl retry ID`` (a real process), the console's
``r`` (Textual Pilot on the real console) and ``queue.admin.retry`` accept and refuse the
same rows — failed, waiting for its next attempt, running, unknown, scheduled and never
run — on every database; and a running job is never retried under the worker that holds it."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select, update

import djctl
from djctl import api, config
from djctl.queue import admin
from djctl.queue.schema import delayed_jobs
from djctl.tui.app import DjctlTop
from djctl.tui.sources import DatabaseSource
from djctl.tui.widgets import FailedPanel
from djctl.worker.worker import Worker
from tests.jobs import Fail, Gate
from tests.support.commands import djctl_cmd
from tests.support.waiting import wait_for

KINDS = ("failed", "waiting", "unknown", "scheduled")
"""The kinds of row each front end gets a fresh one of; "running" is one row shared by all."""
ACCEPTED = {"failed": True, "waiting": True, "running": False, "unknown": False, "scheduled": False}
SIZE = (160, 50)
_c = delayed_jobs.c


def row(job_id: int) -> tuple | None:
    with api.engine().connect().execution_options(sqlite_read=True) as conn:
        found = conn.execute(select(delayed_jobs).where(_c.id == job_id)).first()
    return None if found is None else tuple(found)


def work_off(queue: str, max_attempts: int) -> None:
    Worker(queues=[queue], max_attempts=max_attempts, sleep_delay=0.1, log=lambda line: None).work_off(num=10)


def failed(queue: str) -> int:
    """A job a real worker failed for good."""
    job = djctl.enqueue(Fail("boom"), queue=queue)
    work_off(queue, max_attempts=1)
    assert _state(job)["failed_at"] is not None
    return job


def _state(job_id: int) -> dict:
    with api.engine().connect().execution_options(sqlite_read=True) as conn:
        return dict(conn.execute(select(delayed_jobs).where(_c.id == job_id)).mappings().one())


def waiting(queue: str) -> int:
    """A job that failed once and waits for its next attempt (its backoff: seconds)."""
    job = djctl.enqueue(Fail("boom"), queue=queue)
    work_off(queue, max_attempts=25)
    s = _state(job)
    assert s["attempts"] == 1 and s["failed_at"] is None and s["locked_at"] is None
    return job


def unknown(queue: str) -> int:
    """The id of a job deleted since (a completed job is deleted, too)."""
    job = djctl.enqueue(Fail("boom"), queue=queue)
    assert admin.delete(api.engine(), [job]).done == (job,)
    return job


def scheduled(queue: str) -> int:
    """A job enqueued for an hour from now: it never ran."""
    return djctl.enqueue(Fail("boom"), queue=queue, run_at=djctl.now() + dt.timedelta(hours=1))


MAKE: dict[str, Callable[[str], int]] = {"failed": failed, "waiting": waiting, "unknown": unknown,
                                         "scheduled": scheduled}


def become(kind: str, job: int, queue: str) -> None:
    """Turn the failed job ``job`` into a row of ``kind`` behind the console's back, as a
    colleague or a worker would."""
    eng = api.engine()
    if kind == "waiting":  # a colleague retried it; it ran and failed again
        assert admin.retry(eng, [job]).done == (job,)
        work_off(queue, max_attempts=25)
        assert _state(job)["attempts"] == 1 and _state(job)["failed_at"] is None
    elif kind == "unknown":  # a colleague deleted it
        assert admin.delete(eng, [job]).done == (job,)
    elif kind == "scheduled":  # the row as an enqueue for an hour from now leaves it
        with eng.begin() as conn:
            conn.execute(update(delayed_jobs).where(_c.id == job).values(
                failed_at=None, attempts=0, last_error=None, run_at=api.utc_naive(api.now()) + dt.timedelta(hours=1)))


def by_admin(job: int, env: dict) -> bool:
    outcome = admin.retry(api.engine(), [job])
    assert bool(outcome.done) != bool(outcome.refused)
    return bool(outcome.done)


def by_cli(job: int, env: dict) -> bool:
    r = subprocess.run(djctl_cmd("retry", str(job)), env=env, capture_output=True, text=True, timeout=60)
    if r.returncode == 0:
        assert r.stdout == "Retrying 1 job.\n"
        return True
    assert r.returncode == 2 and r.stderr.startswith("djctl: ") and r.stderr.count("\n") == 1, r
    assert str(job) in r.stderr
    return False


def retried(job: int) -> bool:
    s = _state(job)
    return s["failed_at"] is None and s["attempts"] == 0 and s["locked_at"] is None


def pilot_test(fn):
    def run(*args, **kwargs):
        asyncio.run(fn(*args, **kwargs))
    run.__name__, run.__doc__, run.__wrapped__ = fn.__name__, fn.__doc__, fn
    return run


async def until(pilot, predicate: Callable[[], object], timeout: float = 20.0, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await pilot.pause(0.03)
    return value


def selected(app: DjctlTop) -> int | None:
    job = app.query_one(FailedPanel).selected()
    return None if job is None else job.id


async def press_r(pilot, app: DjctlTop, job: int) -> bool:
    """Press ``r`` with ``job`` selected; whether the console retried it (by what it says)."""
    seen = {n.identity for n in app._notifications}

    def answer() -> str | None:
        return next((n.message for n in app._notifications if n.identity not in seen), None)

    await pilot.press("r")
    said = await until(pilot, answer, message=f"the console's answer about job {job}")
    if said == "Retrying 1 job.":
        return True
    assert said.startswith(f"job {job} not retried: "), said
    return False


async def show_failed(pilot, app: DjctlTop, job: int) -> None:
    """Refresh until the console lists ``job`` as failed and selected. The console refreshes
    only when told to (here, or after an action), so its view stays as it was while the
    row changes behind it, as an operator's view does between two refreshes."""
    await until(pilot, lambda: selected(app) == job or app.poll(force=True), message=f"job {job} selected")


@pilot_test
async def test_cli_console_and_admin_accept_and_refuse_the_same_rows(db_url: str, djctl_env: dict,
                                                                     tmp_path: Path) -> None:
    fronts = {"admin": by_admin, "cli": by_cli}
    verdicts: dict[str, dict[str, bool]] = {"admin": {}, "cli": {}, "console": {}}
    for front, act in fronts.items():
        for kind in KINDS:
            job = MAKE[kind](f"{front}-{kind}")
            before = row(job)
            verdicts[front][kind] = act(job, djctl_env)
            assert retried(job) if verdicts[front][kind] else row(job) == before, (front, kind)

    app = DjctlTop(DatabaseSource(config.current()), refresh=3600)
    async with app.run_test(size=SIZE) as pilot:
        for kind in KINDS:
            queue = f"console-{kind}"
            job = failed(queue)
            await show_failed(pilot, app, job)
            become(kind, job, queue)
            before = row(job)
            verdicts["console"][kind] = await press_r(pilot, app, job)
            assert retried(job) if verdicts["console"][kind] else row(job) == before, ("console", kind)

        # One job a real worker holds, asked to be retried by all three while it runs.
        out, gate = tmp_path / "gate.out", tmp_path / "gate.open"
        gate.touch()
        held = djctl.enqueue(Gate(str(out), str(gate), fail=True), queue="gate")
        work_off("gate", max_attempts=1)  # it failed once: the console lists it
        await show_failed(pilot, app, held)
        gate.unlink()
        assert admin.retry(api.engine(), [held]).done == (held,)
        worker = subprocess.Popen(djctl_cmd("work", "--queues", "gate", "--max-attempts", "1"), env=djctl_env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: out.read_text().count("start") == 2, message="the worker to run the gate job")
            # The worker renews its lease (locked_at) as the job runs: all else must hold still.
            def unrenewed() -> tuple | None:
                found = row(held)
                return None if found is None else tuple(
                    v for c, v in zip(delayed_jobs.c, found, strict=True) if c.name not in ("locked_at", "updated_at"))
            holding = unrenewed()
            assert _state(held)["locked_by"] is not None
            verdicts["admin"]["running"] = by_admin(held, djctl_env)
            verdicts["cli"]["running"] = by_cli(held, djctl_env)
            verdicts["console"]["running"] = await press_r(pilot, app, held)
            assert unrenewed() == holding  # nothing changed under the worker but its lease
            gate.touch()
            # The worker still holds it: only its holder can record the outcome.
            wait_for(lambda: _state(held)["failed_at"] is not None, message="the worker to fail the gate job")
        finally:
            gate.touch()  # a failure above must not leave the worker waiting on the gate
            worker.terminate()
            worker.wait(timeout=30)
    assert "gate failure" in _state(held)["last_error"]
    assert out.read_text().count("start") == 2  # it never ran a second time under its worker

    assert verdicts == {"admin": ACCEPTED, "cli": ACCEPTED, "console": ACCEPTED}
