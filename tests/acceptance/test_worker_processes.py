"""Workers as real processes (`djctl work` / `djctl workoff`) on each database: exactly once under
concurrency, SIGKILL, jobs that kill their process or block past max_run_time, SIGTERM, forged rows."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
from sqlalchemy import update

import djctl
from djctl import api
from djctl.queue.schema import delayed_jobs
from djctl.worker import identity, recovery
from tests import jobs
from tests.support.commands import djctl_cmd
from tests.support.rows import count, row, utcnow
from tests.support.waiting import wait_for

HOST = identity.hostname()
DEADLINE = 60.0


class Proc:
    """A djctl process with its output in files (a pipe could fill up and stall it)."""

    def __init__(self, tmp_path: Path, env: dict, *args: str, name: str = "djctl"):
        self.out_path = tmp_path / f"{name}.{len(list(tmp_path.glob(f'{name}.*.out')))}.out"
        self.err_path = self.out_path.with_suffix(".err")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.popen = subprocess.Popen(djctl_cmd(*args), env=env, stdout=out, stderr=err)
        self.pid = self.popen.pid

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait(self, timeout: float = DEADLINE) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"djctl did not exit within {timeout}s:\n{self.stdout}\n{self.stderr}") from None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@pytest.fixture
def procs():
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


def start(procs: list, tmp_path: Path, env: dict, *args: str) -> Proc:
    p = Proc(tmp_path, env, *args)
    procs.append(p)
    return p


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def started_pid(path: Path) -> int:
    """The pid a job wrote as ``start <pid>`` (the executor running it), once it has."""
    found = wait_for(lambda: [ln for ln in lines(path) if ln.startswith("start ")], DEADLINE,
                     message="the job to start")
    return int(found[-1].split()[1])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# -- exactly once ------------------------------------------------------------------------------

def test_four_workoff_processes_run_2000_jobs_exactly_once(db_url, djctl_env, tmp_path, procs):
    out = tmp_path / "out"
    djctl.enqueue_many([jobs.Touch(str(out), str(i)) for i in range(2000)])
    workers = [start(procs, tmp_path, djctl_env, "workoff") for _ in range(4)]
    for w in workers:
        assert w.wait(180) == 0, w.stderr
    done = lines(out)
    assert len(done) == 2000 and set(done) == {str(i) for i in range(2000)}, "a job ran twice, or never"
    assert count(db_url) == 0
    reported = sum(int(w.stdout.splitlines()[-1].split()[0]) for w in workers)
    assert reported == 2000


# -- wake-ups ------------------------------------------------------------------------------------

def test_an_idle_worker_wakes_when_a_job_is_enqueued(db_url, djctl_env, tmp_path, procs, engine):
    """It polls only every 60 s here; the job runs long before that (PG NOTIFY, or the local doorbell)."""
    out = tmp_path / "out"
    first = djctl.enqueue(jobs.Touch(str(out), "first"))
    worker = start(procs, tmp_path, djctl_env, "work", "--sleep-delay", "60")
    # Its outcome is committed with its next claim, which found nothing: the worker is idle now.
    wait_for(lambda: row(engine, first) is None, DEADLINE, message="the first job")
    djctl.enqueue(jobs.Touch(str(out), "enqueued"))
    wait_for(lambda: lines(out) == ["first", "enqueued"], 20, message="the idle worker to wake up")
    failed = djctl.enqueue(jobs.Touch(str(out), "retried"), run_at=djctl.now() + dt.timedelta(hours=1))
    with engine.begin() as conn:
        conn.execute(update(delayed_jobs).where(delayed_jobs.c.id == failed).values(failed_at=utcnow()))
    r = subprocess.run(djctl_cmd("retry", str(failed)), env=djctl_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: lines(out)[-1:] == ["retried"], 20, message="a retried job to wake the worker")
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait() == 0


# -- SIGKILL --------------------------------------------------------------------------------------

def test_a_worker_killed_mid_job_has_spent_the_attempt(db_url, djctl_env, tmp_path, procs, engine):
    out, gate = tmp_path / "out", tmp_path / "gate"
    job_id = djctl.enqueue(jobs.Gate(str(out), str(gate)))
    worker = start(procs, tmp_path, djctl_env, "work")
    executor = started_pid(out)
    r = row(engine, job_id)
    assert (r["attempts"], r["locked_by"]) == (1, f"host:{HOST} pid:{worker.pid}")

    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    wait_for(lambda: gone(executor), DEADLINE, message="the job's process to die with its worker")
    r = row(engine, job_id)
    assert (r["attempts"], r["locked_by"]) == (1, f"host:{HOST} pid:{worker.pid}")

    # Any worker on this host sees the dead claim: released, the attempt kept.
    assert start(procs, tmp_path, djctl_env, "workoff", "--queues", "elsewhere").wait() == 0
    r = row(engine, job_id)
    assert (r["attempts"], r["locked_by"], r["failed_at"]) == (1, None, None)
    assert r["last_error"] == "worker process died while running this job"

    gate.touch()
    again = start(procs, tmp_path, djctl_env, "workoff")
    assert again.wait() == 0, again.stderr
    assert f"Job Gate (id={job_id}) COMPLETED" in again.stdout
    assert [ln.split()[0] for ln in lines(out)] == ["start", "start", "end"]
    assert row(engine, job_id) is None


def test_a_job_that_kills_its_process_every_time_ends_failed_while_others_flow(db_url, djctl_env, tmp_path,
                                                                               procs, engine):
    out = tmp_path / "out"
    killer = djctl.enqueue(jobs.KillSelf(str(out)))
    others = djctl.enqueue_many([jobs.Touch(str(out), f"k{i}") for i in range(10)], priority=1)
    worker = start(procs, tmp_path, djctl_env, "work", "--max-attempts", "3")

    for attempt in (1, 2, 3):
        r = wait_for(lambda attempt=attempt: (r := row(engine, killer)) and r["attempts"] == attempt
                     and r["locked_at"] is None
                     and r, DEADLINE, message=f"attempt {attempt} to be recorded")
        assert "killed by signal 9 (SIGKILL)" in r["last_error"]
        if attempt < 3:
            assert r["failed_at"] is None
            # The backoff is attempts**4 + 5 seconds: let that time pass.
            with engine.begin() as conn:
                conn.execute(update(delayed_jobs).where(delayed_jobs.c.id == killer).values(run_at=utcnow()))
    assert r["failed_at"] is not None, "spent all its attempts: failed, not looping"
    wait_for(lambda: count(db_url) == 1, DEADLINE, message="the other jobs to be worked off")
    assert sorted(ln for ln in lines(out) if ln != "kill") == sorted(f"k{i}" for i in range(10))
    assert lines(out).count("kill") == 3
    assert all(row(engine, i) is None for i in others)

    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait() == 0, worker.stderr
    assert "FAILED permanently because of 3 consecutive failures" in worker.stdout


# -- read-ahead ------------------------------------------------------------------------------------

def test_claims_waiting_in_the_read_ahead_are_never_started_once_lost(db_url, djctl_env, tmp_path, procs, engine):
    out, gate = tmp_path / "out", tmp_path / "gate"
    first = djctl.enqueue(jobs.Gate(str(out), str(gate)))
    # A worker that knows nothing of its jobs' durations yet claims two at a time: the
    # second waits in the executor's pipe behind the gate.
    waiting = djctl.enqueue_many([jobs.Touch(str(out), f"k{i}") for i in range(2)], priority=1)[:1]
    worker = start(procs, tmp_path, djctl_env, "work", "--max-run-time", "4")
    started_pid(out)
    assert all(row(engine, i)["locked_by"] for i in waiting)
    with engine.begin() as conn:  # another worker takes them over
        conn.execute(update(delayed_jobs).where(delayed_jobs.c.id.in_(waiting))
                     .values(locked_by="host:elsewhere pid:1"))
    # It learns so when it renews them, or it gives them back first (the gate keeps the
    # job in hand running): either way its guarded writes leave them to their new owner.
    wait_for(lambda: "taken over by another worker" in worker.stdout or "gave back" in worker.stdout, DEADLINE,
             message="the worker to let them go")
    gate.touch()
    wait_for(lambda: "k1" in lines(out), DEADLINE, message="the next job to run")
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait() == 0, worker.stderr
    assert [ln.split()[0] for ln in lines(out)] == ["start", "end", "k1"], "k0 never ran here"
    assert row(engine, first) is None
    for i in waiting:
        r = row(engine, i)
        assert (r["locked_by"], r["attempts"]) == ("host:elsewhere pid:1", 1), "left to its new owner"


# -- max_run_time ---------------------------------------------------------------------------------

def test_a_job_blocked_in_a_system_call_past_max_run_time_is_stopped(db_url, djctl_env, tmp_path, procs, engine):
    out = tmp_path / "out"
    stuck = djctl.enqueue(jobs.StuckInSyscall(str(out)))
    after = djctl.enqueue(jobs.Touch(str(out), "after"), priority=1)
    worker = start(procs, tmp_path, djctl_env, "workoff", "--max-run-time", "0.5", "--max-attempts", "1")
    assert worker.wait() == 0, worker.stderr
    executor = int(lines(out)[0].split()[1])
    assert gone(executor), "the stuck process was stopped"
    r = row(engine, stuck)
    assert r["failed_at"] is not None and r["locked_at"] is None and r["attempts"] == 1
    assert "max_run_time" in r["last_error"]
    assert lines(out)[1:] == ["after"] and row(engine, after) is None
    assert f"Job StuckInSyscall (id={stuck}) FAILED permanently" in worker.stdout


# -- SIGTERM / SIGINT ------------------------------------------------------------------------------

def test_a_signalled_worker_finishes_its_job_and_exits_0(db_url, djctl_env, tmp_path, procs, engine, db_kind):
    # SIGINT takes the same path as SIGTERM: once is enough.
    for sig in [signal.SIGTERM] + ([signal.SIGINT] if db_kind == "sqlite" else []):
        _signalled(sig, db_url, djctl_env, tmp_path / sig.name, procs, engine)


def _signalled(sig, db_url, djctl_env, tmp_path, procs, engine) -> None:
    tmp_path.mkdir()
    out, gate = tmp_path / "out", tmp_path / "gate"
    job_id = djctl.enqueue(jobs.Gate(str(out), str(gate)))
    waiting = djctl.enqueue_many([jobs.Touch(str(out), f"k{i}") for i in range(4)], priority=1)
    worker = start(procs, tmp_path, djctl_env, "work")
    started_pid(out)
    # Not knowing its jobs' durations yet, the worker claims two: the gate and one behind it.
    wait_for(lambda: count(db_url, "locked_at IS NOT NULL") == 2, DEADLINE, message="the worker to read ahead")
    os.kill(worker.pid, sig)
    wait_for(lambda: f"pid:{worker.pid})] Exiting..." in worker.stdout, DEADLINE, message="the worker to stop")
    # It stays until its job is done: the job is still running, the worker still there.
    assert worker.popen.poll() is None and "*** Exiting" not in worker.stdout
    assert lines(out)[-1].startswith("start")
    gate.touch()
    assert worker.wait() == 0, worker.stderr
    assert [ln.split()[0] for ln in lines(out)] == ["start", "end"], worker.stdout
    assert row(engine, job_id) is None
    assert count(db_url, "locked_at IS NOT NULL OR locked_by IS NOT NULL") == 0
    # The jobs it had claimed but not started are given back whole: no attempt spent.
    assert [row(engine, i)["attempts"] for i in waiting] == [0, 0, 0, 0]
    assert worker.stdout.splitlines()[-1] == f"*** Exiting job worker host:{HOST} pid:{worker.pid}"
    # The next round starts from an empty queue.
    with engine.begin() as conn:
        conn.execute(delayed_jobs.delete())


# -- forged rows -------------------------------------------------------------------------------------

def test_forged_handlers_fail_alone_and_import_nothing(db_url, djctl_env, tmp_path, procs, engine):
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "imported"
    (evil / "djctl_evil_module.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        "class Job:\n    def perform(self):\n        pass\n"
    )
    env = {**djctl_env, "PYTHONPATH": os.pathsep.join([str(evil), djctl_env["PYTHONPATH"]])}
    out = tmp_path / "out"
    forged = {
        "outside": (json.dumps({"job": "djctl_evil_module:Job", "state": {}}),
                    "HandlerError: handler names module 'djctl_evil_module', which is outside the allowed packages"),
        "outside-nested": (json.dumps({"call": "tests.jobs:add_line", "args": [
            str(out), {"__djctl__": "obj", "cls": "djctl_evil_module:Job", "state": {}}], "kwargs": {}}),
            "outside the allowed packages"),
        "system": (json.dumps({"call": "os:system", "args": [f"touch {marker}"], "kwargs": {}}),
                   "HandlerError: handler names module 'os', which is outside the allowed packages"),
        "invalid": ("{not json", "HandlerError: handler is not valid JSON"),
    }
    # A name missing from an allowed module may be newer than the worker: retried (issue 12).
    gone = json.dumps({"job": "tests.jobs:NoSuchJob", "state": {}})
    now = utcnow()
    ids = {}
    with engine.begin() as conn:
        for name, handler in [*((n, h) for n, (h, _) in forged.items()), ("gone", gone)]:
            ids[name] = conn.execute(delayed_jobs.insert().values(
                handler=handler, run_at=now, created_at=now, updated_at=now)).inserted_primary_key[0]
    good = djctl.enqueue(jobs.Touch(str(out), "good"), priority=1)

    worker = start(procs, tmp_path, env, "workoff")
    assert worker.wait() == 0, worker.stderr
    assert lines(out) == ["good"] and row(engine, good) is None
    assert not marker.exists(), "code outside the allowed packages was imported"
    for name, (_, error) in forged.items():
        r = row(engine, ids[name])
        assert r["failed_at"] is not None and r["attempts"] == 1 and r["locked_at"] is None, name
        assert error in r["last_error"], (name, r["last_error"])
        assert f"(id={ids[name]}) FAILED permanently" in worker.stdout
    r = row(engine, ids["gone"])
    assert r["failed_at"] is None and r["attempts"] == 1 and r["run_at"] > now, r
    assert "which no longer exists" in r["last_error"] and "djctl restart" in r["last_error"]
    assert worker.stdout.splitlines()[-1].endswith("6 jobs processed at " + worker.stdout.split(" at ")[-1]
                                                   .split(" j/s")[0] + " j/s, 5 failed")


def test_a_killed_workers_unstarted_claims_get_their_attempt_back(db_url, djctl_env, tmp_path, procs, engine):
    out, gate = tmp_path / "out", tmp_path / "gate"
    running = djctl.enqueue(jobs.Gate(str(out), str(gate)))
    waiting = djctl.enqueue(jobs.Touch(str(out), "k0"), priority=1)
    worker = start(procs, tmp_path, djctl_env, "work")
    started_pid(out)
    wait_for(lambda: count(db_url, "locked_at IS NOT NULL") == 2, DEADLINE, message="the read-ahead claim")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    with engine.begin() as conn:  # what a supervisor does when it sees its worker die
        recovery.release_dead(conn, [identity.format(identity.hostname(), worker.pid)], "died",
                              api.utc_naive(api.now()), 25)
    r = row(engine, running)
    assert (r["locked_by"], r["attempts"], r["last_error"]) == (None, 1, "died"), "it ran: the attempt counts"
    r = row(engine, waiting)
    assert (r["locked_by"], r["attempts"]) == (None, 0), "it never started: no attempt spent"
    assert lines(out)[-1].startswith("start") and "k0" not in lines(out)
