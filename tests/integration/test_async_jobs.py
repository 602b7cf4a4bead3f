"""Coroutine jobs (issue 13): every shape runs to its end exactly once, on one loop per executor;
failures retry with last_error; max_run_time stops them; nothing is reported done that did not run."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

import djctl
from djctl.queue.schema import delayed_jobs
from tests.integration import async_jobs as aj
from tests.support.rows import count


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def worker(log: list[str] | None = None, **kwargs) -> djctl.Worker:
    kwargs.setdefault("sleep_delay", 0.2)
    return djctl.Worker(log=(log.append if log is not None else (lambda _line: None)), **kwargs)


def row(engine, job_id: int) -> dict | None:
    with engine.connect().execution_options(sqlite_read=True) as conn:
        found = conn.execute(select(delayed_jobs).where(delayed_jobs.c.id == job_id)).first()
    return dict(found._mapping) if found else None


def test_every_coroutine_shape_runs_once_to_its_end(engine, tmp_path):
    out = str(tmp_path / "out")
    djctl.enqueue(aj.AsyncPerform(out, "perform"))
    djctl.enqueue(aj.ReturnsAwaitable(out))
    djctl.delay(aj.async_function)(out, "delay-function")
    djctl.delay(aj.Photo(out)).upload(size=3)
    aj.later(out, "handle-function")
    aj.Photo(out).resize(640)
    log: list[str] = []
    assert worker(log).work_off() == (6, 0)
    got = lines(Path(out))
    assert [line.split()[0] for line in got] == [
        "perform", "returned", "delay-function", "upload", "handle-function", "resize"]
    assert got[3] == "upload 3" and got[5] == "resize 640"
    assert count(str(engine.url)) == 0
    done = [line for line in log if not line.endswith(" RUN")]
    assert all("COMPLETED" in line for line in done) and len(done) == 6


def test_one_loop_serves_every_job_of_an_executor(engine, tmp_path):
    out = tmp_path / "out"
    djctl.enqueue_many([aj.AsyncPerform(str(out), f"k{i}") for i in range(3)])
    assert worker(read_ahead=3).work_off() == (3, 0)
    tokens = {line.split()[1] for line in lines(out)}
    assert len(tokens) == 1, f"each job saw a different event loop: {tokens}"


def test_async_hooks_are_awaited_in_order(engine, tmp_path):
    ok, bad = tmp_path / "ok", tmp_path / "bad"
    djctl.enqueue(aj.AsyncHooks(str(ok)))
    djctl.enqueue(aj.AsyncHooks(str(bad), fail=True))
    assert worker().work_off() == (1, 1)
    assert lines(ok) == ["before", "perform", "success", "after"]
    assert lines(bad) == ["before", "error ValueError", "failure", "after"]


def test_an_async_job_that_raises_is_retried_with_last_error(engine, tmp_path):
    job_id = djctl.enqueue(aj.AsyncFail("async boom"))
    assert worker().work_off() == (0, 1)
    r = row(engine, job_id)
    assert r["attempts"] == 1 and r["failed_at"] is None and r["locked_at"] is None
    assert r["last_error"].startswith("RuntimeError: async boom")
    assert r["run_at"] > r["created_at"]


def test_an_async_job_past_max_run_time_is_stopped_and_the_loop_serves_the_next(engine, tmp_path):
    out = tmp_path / "out"
    job_id = djctl.enqueue(aj.AsyncSleeper(str(out), seconds=30), priority=0)
    djctl.enqueue(aj.AsyncPerform(str(out), "after"), priority=1)
    assert worker(read_ahead=2, max_attempts=1).work_off() == (1, 1)
    got = lines(out)
    assert got[:2] == ["start", "cancelled"] and got[2].startswith("after ")
    r = row(engine, job_id)
    assert r["failed_at"] is not None and r["locked_at"] is None
    assert r["last_error"].startswith("JobTimeout: job exceeded its max_run_time")
    # The signal lands in the event loop; the error still shows the job's own line.
    waiting = r["last_error"].split("The job was waiting here (most recent call last):\n", 1)[1]
    assert "async_jobs.py" in waiting and "in perform" in waiting and "await asyncio.sleep(self.seconds)" in waiting


def test_no_job_is_reported_completed_unless_its_body_ran(engine, tmp_path):
    # Before issue 13 each of these was logged COMPLETED and deleted with no line written.
    out = tmp_path / "out"
    ids = [djctl.enqueue(aj.AsyncPerform(str(out), "perform")),
           djctl.delay(aj.async_function)(str(out), "function")]
    gen = djctl.enqueue(aj.AsyncGeneratorJob(str(out)))
    log: list[str] = []
    results = worker(log, max_attempts=1).work_off()
    completed = [line for line in log if "COMPLETED" in line]
    ran = [line.split()[0] for line in lines(out)]
    assert len(completed) == len(ran) == 2 and results == (2, 1)
    assert all(f"id={i})" in " ".join(completed) for i in ids)
    r = row(engine, gen)
    assert r["failed_at"] is not None and "async generator" in r["last_error"]
