"""Working off jobs in this process (SPEC §3): order, filters, hooks and overrides, backoff,
max_attempts, max_run_time, takeovers and dying executors — checked in the table and the log."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from pathlib import Path

import pytest
from sqlalchemy import text, update

import djctl
from djctl import config
from djctl.queue.claims import Claims
from djctl.queue.schema import delayed_jobs
from djctl.worker import identity
from djctl.worker.rounds import Round, Rounds
from tests import jobs
from tests.support.rows import count, row, utcnow
from tests.support.waiting import wait_for

HOST = identity.hostname()


def set_row(engine, job_id: int, **values) -> None:
    with engine.begin() as conn:
        conn.execute(update(delayed_jobs).where(delayed_jobs.c.id == job_id).values(**values))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def worker(log: list[str] | None = None, **kwargs) -> djctl.Worker:
    kwargs.setdefault("sleep_delay", 0.2)
    return djctl.Worker(log=(log.append if log is not None else (lambda _line: None)), **kwargs)


def touch(out: Path, key: str, **opts) -> int:
    return djctl.enqueue(jobs.Touch(str(out), key), **opts)


# -- what runs, and in which order ---------------------------------------------------------

def test_work_off_runs_ready_jobs_and_deletes_them(engine, tmp_path):
    out = tmp_path / "out"
    ids = [touch(out, f"k{i}") for i in range(3)]
    log: list[str] = []
    assert worker(log).work_off() == (3, 0)
    assert lines(out) == ["k0", "k1", "k2"]
    assert count(str(engine.url)) == 0
    me = f"host:{HOST} pid:{os.getpid()}"
    assert [line for line in log if line.endswith(" RUN")] == [f"[Worker({me})] Job Touch (id={i}) RUN" for i in ids]
    done = [line for line in log if " RUN" not in line]
    assert [line.rsplit(" after ", 1)[0] for line in done] == [
        f"[Worker({me})] Job Touch (id={i}) COMPLETED" for i in ids]
    assert worker().work_off() == (0, 0)


def test_work_off_stops_after_num_jobs(engine, tmp_path):
    out = tmp_path / "out"
    for i in range(5):
        touch(out, f"k{i}")
    assert worker(read_ahead=10).work_off(num=2) == (2, 0)
    assert lines(out) == ["k0", "k1"]
    # The jobs it did not get to are untouched: not locked, no attempt counted.
    with engine.connect() as conn:
        left = conn.execute(text("SELECT attempts, locked_at, locked_by FROM delayed_jobs")).all()
    assert [tuple(r) for r in left] == [(0, None, None)] * 3


def test_priority_first_then_run_at(engine, tmp_path):
    out = tmp_path / "out"
    past = utcnow() - dt.timedelta(minutes=10)
    touch(out, "p5-old", priority=5, run_at=past)
    touch(out, "p0-new")
    touch(out, "p-2", priority=-2)
    touch(out, "p0-old", run_at=past)
    touch(out, "p5-new", priority=5)
    touch(out, "p0-mid", run_at=past + dt.timedelta(minutes=5))
    assert worker(read_ahead=2).work_off() == (6, 0)
    assert lines(out) == ["p-2", "p0-old", "p0-mid", "p0-new", "p5-old", "p5-new"]


def test_jobs_not_ready_are_left_alone(engine, tmp_path):
    out = tmp_path / "out"
    future = touch(out, "future", run_at=djctl.now() + dt.timedelta(minutes=1))
    failed = touch(out, "failed")
    set_row(engine, failed, failed_at=utcnow(), attempts=25)
    locked = touch(out, "locked")
    set_row(engine, locked, locked_at=utcnow(), locked_by="host:elsewhere pid:1")
    expired = touch(out, "expired")
    set_row(engine, expired, locked_at=utcnow() - dt.timedelta(hours=5), locked_by="host:elsewhere pid:2",
            attempts=1)
    # A worker that has only just connected judges no lease: while it was away it could
    # not see renewals (issue 14, 1).
    assert worker().work_off() == (0, 0)
    assert row(engine, expired)["locked_by"] == "host:elsewhere pid:2"
    # Once connected for a whole lease, a lease unrenewed for heartbeat_timeout is taken
    # over; the others wait.
    rounds = Rounds(config.current().database_url, Claims(engine.dialect.name, "host:here pid:1"),
                    lease=dt.timedelta(seconds=0.3), max_attempts=25, destroy_failed=False)
    rounds.run(Round(maintenance=True))
    assert row(engine, expired)["locked_by"] == "host:elsewhere pid:2"
    wait_for(lambda: rounds.run(Round(maintenance=True)) and row(engine, expired)["locked_by"] is None, 10,
             message="the lease to be judged expired once connected for a whole lease")
    rounds.drop()
    set_row(engine, locked, locked_at=utcnow(), locked_by="host:elsewhere pid:1")  # renewed by its holder
    assert worker().work_off() == (1, 0)
    assert lines(out) == ["expired"]
    assert row(engine, expired) is None
    assert {r for r in (future, failed, locked) if row(engine, r)} == {future, failed, locked}


def test_queue_filter(engine, tmp_path):
    out = tmp_path / "out"
    touch(out, "default")
    touch(out, "mail", queue="mail")
    touch(out, "media", queue="media")
    touch(out, "other", queue="other")
    assert worker(queues=["mail", "media"]).work_off() == (2, 0)
    assert lines(out) == ["mail", "media"]
    assert worker(queues=["other"]).work_off() == (1, 0)
    assert worker().work_off() == (1, 0)  # no filter: every queue, the default one too
    assert lines(out) == ["mail", "media", "other", "default"]


def test_priority_filters(engine, tmp_path):
    out = tmp_path / "out"
    for p in (-5, 0, 3, 7, 10):
        touch(out, f"p{p}", priority=p)
    assert worker(min_priority=0, max_priority=7).work_off() == (3, 0)
    assert lines(out) == ["p0", "p3", "p7"]
    assert worker(min_priority=8).work_off() == (1, 0)
    assert worker(max_priority=-1).work_off() == (1, 0)
    assert lines(out)[3:] == ["p10", "p-5"]


# -- failures --------------------------------------------------------------------------------

def test_a_failure_counts_an_attempt_and_backs_off(engine):
    job_id = djctl.enqueue(jobs.Fail("first"))
    log: list[str] = []
    before = utcnow()
    assert worker(log).work_off() == (0, 1)
    r = row(engine, job_id)
    assert r["attempts"] == 1
    assert r["failed_at"] is None and r["locked_at"] is None and r["locked_by"] is None
    assert r["last_error"].startswith("RuntimeError: first\nTraceback")
    assert "tests/jobs.py" in r["last_error"]
    # attempts**4 + 5 seconds: 6 seconds after the first failure
    assert before + dt.timedelta(seconds=6) <= r["run_at"] <= utcnow() + dt.timedelta(seconds=6)
    assert log[-1].endswith(f"Job Fail (id={job_id}) FAILED (0 prior attempts) with RuntimeError: first")

    assert worker().work_off() == (0, 0)  # not due yet
    set_row(engine, job_id, run_at=utcnow() - dt.timedelta(seconds=1), attempts=3)
    before = utcnow()
    assert worker().work_off() == (0, 1)
    r = row(engine, job_id)
    assert r["attempts"] == 4
    assert before + dt.timedelta(seconds=4**4 + 5) <= r["run_at"] <= utcnow() + dt.timedelta(seconds=4**4 + 5)


def test_after_25_attempts_the_job_is_failed_and_kept(engine):
    job_id = djctl.enqueue(jobs.Fail("again"))
    set_row(engine, job_id, attempts=23)
    assert worker().work_off() == (0, 1)
    assert row(engine, job_id)["attempts"] == 24 and row(engine, job_id)["failed_at"] is None
    set_row(engine, job_id, run_at=utcnow() - dt.timedelta(seconds=1))
    log: list[str] = []
    assert worker(log).work_off() == (0, 1)
    r = row(engine, job_id)
    assert r["attempts"] == 25
    assert r["failed_at"] is not None and r["locked_at"] is None
    assert r["last_error"].startswith("RuntimeError: again")
    assert "FAILED permanently because of 25 consecutive failures" in log[-1]
    set_row(engine, job_id, run_at=utcnow() - dt.timedelta(seconds=1))
    assert worker().work_off() == (0, 0)  # failed jobs are never picked up again


def test_worker_max_attempts(engine):
    job_id = djctl.enqueue(jobs.Fail())
    assert worker(max_attempts=1).work_off() == (0, 1)
    assert row(engine, job_id)["failed_at"] is not None


def test_destroy_failed_jobs_deletes_them(engine, db_url):
    keep = djctl.enqueue(jobs.Fail())
    settings = config.current().replace(destroy_failed_jobs=True)
    retried = djctl.enqueue(jobs.Fail())
    set_row(engine, keep, attempts=24)
    assert worker(settings=settings).work_off() == (0, 2)
    assert row(engine, keep) is None
    assert row(engine, retried)["attempts"] == 1  # not yet spent: rescheduled, not deleted


# -- hooks and overrides ---------------------------------------------------------------------

def test_hooks_on_success(engine, tmp_path):
    out = tmp_path / "hooks"
    djctl.enqueue(jobs.Hooked(str(out)))
    assert worker().work_off() == (1, 0)
    assert lines(out) == ["before", "perform", "success", "after"]


def test_hooks_on_failure_and_on_final_failure(engine, tmp_path):
    out = tmp_path / "hooks"
    job_id = djctl.enqueue(jobs.Hooked(str(out), fail=True))
    assert worker().work_off() == (0, 1)
    assert lines(out) == ["before", "perform", "error ValueError: hooked failure", "after"]
    out.unlink()
    set_row(engine, job_id, run_at=utcnow() - dt.timedelta(seconds=1))
    assert worker(max_attempts=2).work_off() == (0, 1)
    assert lines(out) == ["before", "perform", "error ValueError: hooked failure", "failure", "after"]
    assert row(engine, job_id)["failed_at"] is not None


def test_job_overrides_max_attempts_reschedule_at_and_queue(engine):
    job_id = djctl.enqueue(jobs.Overridden())
    assert row(engine, job_id)["queue"] == "special"
    before = utcnow()
    assert worker().work_off() == (0, 1)
    r = row(engine, job_id)
    assert r["attempts"] == 1 and r["failed_at"] is None
    assert before + dt.timedelta(hours=1) <= r["run_at"] <= utcnow() + dt.timedelta(hours=1)
    set_row(engine, job_id, run_at=utcnow() - dt.timedelta(seconds=1))
    assert worker().work_off() == (0, 1)  # max_attempts = 2 on the job beats the worker's 25
    r = row(engine, job_id)
    assert r["attempts"] == 2 and r["failed_at"] is not None


def test_job_max_run_time_stops_it(engine, tmp_path):
    out = tmp_path / "out"
    job_id = djctl.enqueue(jobs.Sleeper(str(out), seconds=30))  # its own max_run_time: 0.3 s
    after = touch(out, "after")
    log: list[str] = []
    assert worker(log).work_off() == (1, 1)
    assert lines(out) == ["start", "after"]
    r = row(engine, job_id)
    assert r["attempts"] == 1 and r["locked_at"] is None
    assert r["last_error"].startswith("JobTimeout: job exceeded its max_run_time")
    assert row(engine, after) is None


def test_jobs_waiting_behind_a_long_one_get_their_full_max_run_time(engine, tmp_path):
    out = tmp_path / "out"
    # Claimed together; together longer than max_run_time, each well within it.
    djctl.enqueue_many([jobs.Touch(str(out), "first", seconds=0.6), jobs.Touch(str(out), "second", seconds=0.6)])
    assert worker(max_run_time=1.0).work_off() == (2, 0)
    assert lines(out) == ["first", "second"]


def test_job_stuck_where_signals_cannot_reach_is_killed(engine, tmp_path):
    out = tmp_path / "out"
    job_id = djctl.enqueue(jobs.StuckInSyscall(str(out)))
    touch(out, "after")
    assert worker(max_run_time=0.3, kill_grace=0.2, max_attempts=1).work_off() == (1, 1)
    assert [line.split()[0] for line in lines(out)] == ["start", "after"]
    r = row(engine, job_id)
    assert r["failed_at"] is not None and r["locked_at"] is None
    assert "max_run_time" in r["last_error"]


# -- the executor dies -------------------------------------------------------------------------

def test_a_job_that_kills_its_process_spends_an_attempt_and_others_flow(engine, tmp_path):
    out = tmp_path / "out"
    killer = djctl.enqueue(jobs.KillSelf(str(out)))
    others = [touch(out, f"k{i}", priority=1) for i in range(3)]
    assert worker().work_off() == (3, 1)
    r = row(engine, killer)
    assert r["attempts"] == 1 and r["failed_at"] is None and r["locked_at"] is None
    assert "killed by signal 9 (SIGKILL)" in r["last_error"]
    assert r["run_at"] > utcnow()
    for _attempt in (2, 3):
        set_row(engine, killer, run_at=utcnow() - dt.timedelta(seconds=1))
        assert worker(max_attempts=3).work_off() == (0, 1)
    r = row(engine, killer)
    assert r["attempts"] == 3 and r["failed_at"] is not None
    assert lines(out) == ["kill", "k0", "k1", "k2", "kill", "kill"]
    assert all(row(engine, i) is None for i in others)


@pytest.fixture
def crashing_package(tmp_path, monkeypatch):
    """An allowed package with a module that SIGKILLs whoever imports it."""
    name = f"djctl_crash_{os.getpid()}_{tmp_path.name.replace('-', '_')}"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "boom.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
                                 "class Job:\n    def perform(self):\n        pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_job_that_kills_its_process_while_loading_ends_failed(engine, tmp_path, crashing_package):
    out = tmp_path / "out"
    with engine.begin() as conn:
        now = utcnow()
        job_id = conn.execute(delayed_jobs.insert().values(
            handler=json.dumps({"job": f"{crashing_package}.boom:Job"}), run_at=now, created_at=now, updated_at=now
        )).inserted_primary_key[0]
    touch(out, "after", priority=1)
    settings = config.current().replace(allow=(crashing_package,))
    assert worker(settings=settings, max_attempts=2).work_off() == (1, 1)
    set_row(engine, job_id, run_at=utcnow() - dt.timedelta(seconds=1))
    assert worker(settings=settings, max_attempts=2).work_off() == (0, 1)
    r = row(engine, job_id)
    assert r["attempts"] == 2 and r["failed_at"] is not None
    assert "killed by signal 9" in r["last_error"]
    assert lines(out) == ["after"]


# -- only while still locked by this worker ----------------------------------------------------

@pytest.mark.parametrize("fail", [False, True], ids=["completion", "failure"])
def test_a_job_taken_over_while_running_is_left_to_its_new_owner(engine, fail):
    job_id = djctl.enqueue(jobs.TakeOver(key=f"takeover-{fail}", fail=fail))
    worker().work_off()
    r = row(engine, job_id)
    assert r is not None, "a late finisher deleted a job it no longer held"
    assert r["locked_by"] == "host:elsewhere pid:1"
    assert r["locked_at"] is not None
    assert r["attempts"] == 1 and r["failed_at"] is None and r["last_error"] is None


# -- the API as documented -----------------------------------------------------------------------

def test_worker_signature_as_documented(db_url):
    w = djctl.Worker(queues=["mail"], min_priority=None, max_priority=None, sleep_delay=5, max_attempts=25,
                     max_run_time=dt.timedelta(hours=4))
    assert w.max_run_time == dt.timedelta(hours=4)
    assert w.max_attempts == 25 and w.sleep_delay == 5
    d = djctl.Worker()
    assert (d.max_attempts, d.max_run_time) == (25, dt.timedelta(hours=4))


def test_worker_name_is_host_and_pid(engine, tmp_path):
    job_id = djctl.enqueue(jobs.Gate(str(tmp_path / "out"), str(tmp_path / "gate"), limit=0))
    log: list[str] = []
    worker(log).work_off()
    assert re.fullmatch(rf"\[Worker\(host:{re.escape(HOST)} pid:{os.getpid()}\)\] Job Gate \(id={job_id}\) RUN",
                        log[0])
