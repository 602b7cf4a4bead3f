"""The first hour of a real user, as the worker's log and the table show it (issue 12):
a worker with no app, a deploy that enqueues code the workers do not have yet, quick jobs
behind slow ones, and a log that says what ran when."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

import djctl
from djctl import config
from djctl.queue.claims import LEFT
from djctl.queue.schema import delayed_jobs
from djctl.tui.dashboard import status_line
from djctl.tui.model import JobFilter
from djctl.tui.sources import DatabaseSource
from tests import jobs
from tests.support.commands import djctl_cmd
from tests.support.rows import row, utcnow
from tests.support.waiting import wait_for

DEADLINE = 60.0


class Proc:
    """A djctl process with its output in a file (a pipe could fill up and stall it)."""

    def __init__(self, tmp_path: Path, env: dict, *args: str):
        self.out_path = tmp_path / f"djctl.{len(list(tmp_path.glob('djctl.*.out')))}.out"
        with open(self.out_path, "w") as out:
            self.popen = subprocess.Popen(djctl_cmd(*args), env=env, cwd=tmp_path, stdout=out,
                                          stderr=subprocess.STDOUT)

    @property
    def lines(self) -> list[str]:
        return self.out_path.read_text().splitlines()

    def wait(self, timeout: float = DEADLINE) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"djctl did not exit within {timeout}s:\n" + "\n".join(self.lines)) from None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            self.wait()


@pytest.fixture
def procs():
    started: list[Proc] = []
    yield started
    for p in started:
        if p.popen.poll() is None:
            p.popen.kill()
            p.popen.wait()


def start(procs: list, tmp_path: Path, env: dict, *args: str) -> Proc:
    p = Proc(tmp_path, env, *args)
    procs.append(p)
    return p


def no_app(env: dict) -> dict:
    return {k: v for k, v in env.items() if k not in ("DJ_APP", "DJ_ALLOW")}


def forge(engine, handler: dict) -> int:
    now = utcnow()
    with engine.begin() as conn:
        return conn.execute(delayed_jobs.insert().values(
            handler=json.dumps(handler), run_at=now, created_at=now, updated_at=now)).inserted_primary_key[0]


# -- 2. no app configured --------------------------------------------------------------------

def test_a_worker_without_an_app_warns_and_leaves_jobs_for_one_that_can_run_them(
        db_url, djctl_env, tmp_path, procs, engine):
    out = tmp_path / "out"
    job = djctl.enqueue(jobs.Touch(str(out), "welcome"))

    lost = start(procs, tmp_path, no_app(djctl_env), "work")
    wait_for(lambda: any(" LEFT " in line for line in lost.lines), timeout=DEADLINE)
    said = lost.lines
    assert said[0].startswith("*** Starting job worker ")
    assert "WARNING: no app configured" in said[1]
    assert all(where in said[1] for where in ("--app", "DJ_APP", "[tool.djctl]")), said[1]
    assert any(f"Job tests.jobs:Touch (id={job}) LEFT for a worker that can run it: " in line
               and "outside the allowed packages" in line for line in said), said
    assert not any("Job ?" in line or "FAILED" in line for line in said), said
    r = row(engine, job)
    assert r is not None and r["failed_at"] is None and r["attempts"] == 0
    assert "outside the allowed packages" in r["last_error"]

    # stats and the console say the job waits for a worker that can run it.
    stats = subprocess.run(djctl_cmd("stats"), env=djctl_env, capture_output=True, text=True, timeout=60)
    assert stats.returncode == 0 and stats.stdout.splitlines()[-1] == (
        "1 job (default) left unrun by workers with no app configured, waiting for one that can run them: "
        "give the workers --app, DJ_APP or app in [tool.djctl]"), stats.stdout
    snap = DatabaseSource(config.current()).snapshot(JobFilter())
    assert snap.left_unrun == 1 and sum(q.ready for q in snap.queues) == 1
    assert "1 left unrun: no worker with an app" in str(status_line(snap, "", snap.taken_at, JobFilter()))

    # It does not claim the job again at once, and a worker with the app runs it.
    assert any("left 1 job(s) it may not run; claiming again in 10s" in line for line in said), said
    able = start(procs, tmp_path, djctl_env, "workoff")
    assert able.wait() == 0, able.lines
    assert out.read_text().splitlines() == ["welcome"] and row(engine, job) is None
    lost.stop()


def test_a_worker_with_an_app_still_fails_code_outside_it(db_url, djctl_env, tmp_path, procs, engine):
    job = forge(engine, {"call": "os:system", "args": ["true"], "kwargs": {}})
    worker = start(procs, tmp_path, djctl_env, "workoff")
    assert worker.wait() == 0, worker.lines
    r = row(engine, job)
    assert r["failed_at"] is not None and "outside the allowed packages" in r["last_error"]
    assert any(f"Job os:system (id={job}) FAILED permanently" in line for line in worker.lines), worker.lines


def test_workoff_without_an_app_ends_and_leaves_the_jobs(db_url, djctl_env, tmp_path, procs, engine):
    job = djctl.enqueue(jobs.Touch(str(tmp_path / "out"), "welcome"))
    worker = start(procs, tmp_path, no_app(djctl_env), "workoff")
    assert worker.wait() == 0, worker.lines
    assert worker.lines[-1].startswith("0 jobs processed at "), worker.lines
    assert any(line.endswith("left 1 job(s) it may not run, for a worker that can") for line in worker.lines)
    assert not any("claiming again" in line for line in worker.lines), "workoff ends; it claims nothing again"
    r = row(engine, job)
    # Claimable by any worker (locked_at NULL), marked as left for one that can run it.
    assert r["failed_at"] is None and r["attempts"] == 0 and r["locked_at"] is None
    assert r["locked_by"] == LEFT


# -- 3. a deploy enqueues code the workers do not have yet ---------------------------------

def test_a_name_the_worker_does_not_have_yet_is_retried_until_a_restart_brings_it(
        db_url, djctl_env, tmp_path, procs, engine):
    app = tmp_path / "app"
    (app / "photos").mkdir(parents=True)
    (app / "photos" / "__init__.py").write_text("")
    (app / "photos" / "jobs.py").write_text("def old_job(path):\n    open(path, 'a').write('old\\n')\n")
    env = {**djctl_env, "DJ_APP": "photos", "PYTHONPATH": f"{app}:{djctl_env['PYTHONPATH']}"}
    out = tmp_path / "out"
    job = forge(engine, {"call": "photos.jobs:brand_new_job", "args": [str(out)], "kwargs": {}})

    old = start(procs, tmp_path, env, "workoff")
    assert old.wait() == 0, old.lines
    r = row(engine, job)
    assert r["failed_at"] is None and r["attempts"] == 1 and r["locked_by"] is None
    assert r["run_at"] > utcnow(), "retried with the normal backoff, not at once"
    assert "'photos.jobs:brand_new_job', which no longer exists" in r["last_error"]
    assert "restart the workers (djctl restart)" in r["last_error"]
    assert any(f"Job photos.jobs:brand_new_job (id={job}) FAILED (0 prior attempts) with HandlerError: " in line
               for line in old.lines), old.lines

    # The deploy lands and the workers restart: the retry runs it.
    (app / "photos" / "jobs.py").write_text(
        "def brand_new_job(path):\n    open(path, 'a').write('new\\n')\n")
    with engine.begin() as conn:
        conn.execute(delayed_jobs.update().where(delayed_jobs.c.id == job).values(run_at=utcnow()))
    new = start(procs, tmp_path, env, "workoff")
    assert new.wait() == 0, new.lines
    assert out.read_text() == "new\n" and row(engine, job) is None


@pytest.mark.parametrize("broken", ["def oops(:\n", "raise RuntimeError('no config yet')\n"])
def test_a_module_that_does_not_import_is_retried_not_failed_for_good(
        broken, db_url, djctl_env, tmp_path, procs, engine):
    """A syntax error or an exception at import (a bad deploy) costs an attempt, with a
    message saying to fix and restart, never the job: the fixed code runs it."""
    app = tmp_path / "app"
    (app / "photos").mkdir(parents=True)
    (app / "photos" / "__init__.py").write_text("")
    (app / "photos" / "jobs.py").write_text("def resize(path):\n    open(path, 'a').write('resized\\n')\n" + broken)
    env = {**djctl_env, "DJ_APP": "photos", "PYTHONPATH": f"{app}:{djctl_env['PYTHONPATH']}"}
    out = tmp_path / "out"
    job = forge(engine, {"call": "photos.jobs:resize", "args": [str(out)], "kwargs": {}})

    first = start(procs, tmp_path, env, "workoff")
    assert first.wait() == 0, first.lines
    r = row(engine, job)
    assert r["failed_at"] is None and r["attempts"] == 1 and r["run_at"] > utcnow(), r
    assert "module 'photos.jobs', which cannot be imported" in r["last_error"]
    assert "restart the workers (djctl restart)" in r["last_error"]
    assert any(f"Job photos.jobs:resize (id={job}) FAILED (0 prior attempts)" in line for line in first.lines)

    (app / "photos" / "jobs.py").write_text("def resize(path):\n    open(path, 'a').write('resized\\n')\n")
    with engine.begin() as conn:
        conn.execute(delayed_jobs.update().where(delayed_jobs.c.id == job).values(run_at=utcnow()))
    fixed = start(procs, tmp_path, env, "workoff")
    assert fixed.wait() == 0, fixed.lines
    assert out.read_text() == "resized\n" and row(engine, job) is None


def test_a_missing_name_fails_for_good_once_its_attempts_are_spent(db_url, djctl_env, tmp_path, procs, engine):
    job = forge(engine, {"job": "tests.jobs:NoSuchJob", "state": {}})
    with engine.begin() as conn:
        conn.execute(delayed_jobs.update().where(delayed_jobs.c.id == job).values(attempts=24))
    worker = start(procs, tmp_path, djctl_env, "workoff")
    assert worker.wait() == 0, worker.lines
    r = row(engine, job)
    assert r["failed_at"] is not None and "djctl restart" in r["last_error"]
    assert any(f"Job tests.jobs:NoSuchJob (id={job}) FAILED permanently" in line for line in worker.lines)


# -- 4. a quick job behind a slow one ----------------------------------------------------------

def test_jobs_claimed_behind_a_slow_one_go_to_an_idle_worker(db_url, djctl_env, tmp_path, procs, engine):
    out, gate = tmp_path / "out", tmp_path / "gate"
    slow = djctl.enqueue(jobs.Gate(str(out), str(gate)))
    quick = djctl.enqueue(jobs.Touch(str(out), "quick"), priority=1)

    first = start(procs, tmp_path, djctl_env, "work", "--read-ahead", "5")
    wait_for(lambda: out.exists() and out.read_text().startswith("start"), timeout=DEADLINE)
    wait_for(lambda: any("gave back 1 job(s) claimed ahead of it" in line for line in first.lines),
             timeout=DEADLINE)
    assert any(f"Job Gate (id={slow}) has run " in line for line in first.lines), first.lines
    wait_for(lambda: row(engine, quick)["locked_by"] is None, timeout=DEADLINE)
    assert row(engine, quick)["attempts"] == 0, "given back, attempt refunded"

    second = start(procs, tmp_path, djctl_env, "work")
    wait_for(lambda: any(f"(id={quick}) COMPLETED" in line for line in second.lines), timeout=DEADLINE)
    assert "quick" in out.read_text().splitlines() and "end" not in out.read_text(), "ran while the slow one ran"
    gate.touch()
    wait_for(lambda: any(f"(id={slow}) COMPLETED" in line for line in first.lines), timeout=DEADLINE)
    first.stop()
    second.stop()
    assert not any(f"(id={quick})" in line for line in first.lines if "gave back" not in line), first.lines


def test_a_job_given_back_wakes_an_idle_worker_at_once(db_url, djctl_env, tmp_path, procs, engine):
    """An idle worker that polls only every 120 s takes a job given back behind a slow
    one at once: the give-back wakes it (NOTIFY on PostgreSQL, the doorbell elsewhere)."""
    out, gate = tmp_path / "out", tmp_path / "gate"
    idle = start(procs, tmp_path, djctl_env, "work", "--sleep-delay", "120")
    wait_for(lambda: any(line.startswith("*** Starting job worker") for line in idle.lines), timeout=DEADLINE)
    # Due in a moment: the enqueue's own wake-up finds nothing ready, and the idle worker
    # sleeps again; the busy worker, polling, claims both when they fall due.
    due = djctl.now() + timedelta(seconds=2)
    slow = djctl.enqueue(jobs.Gate(str(out), str(gate)), run_at=due)
    quick = djctl.enqueue(jobs.Touch(str(out), "quick"), priority=1, run_at=due)
    busy = start(procs, tmp_path, djctl_env, "work", "--read-ahead", "5", "--sleep-delay", "0.1")
    wait_for(lambda: any("gave back 1 job(s) claimed ahead of it" in line for line in busy.lines), timeout=DEADLINE)
    wait_for(lambda: any(f"(id={quick}) COMPLETED" in line for line in idle.lines), timeout=60,
             message="the idle worker to be woken for the given-back job")
    assert out.read_text().splitlines()[0].startswith("start") and "end" not in out.read_text()
    gate.touch()
    wait_for(lambda: row(engine, slow) is None, timeout=DEADLINE)
    busy.stop()
    idle.stop()


# -- 11. the log tells what ran, when, and for how long -------------------------------------

def test_each_jobs_output_follows_its_run_line_and_precedes_its_completed_line(db_url, djctl_env, tmp_path, procs,
                                                                              engine):
    app = tmp_path / "app"
    (app / "photos").mkdir(parents=True)
    (app / "photos" / "__init__.py").write_text("")
    (app / "photos" / "jobs.py").write_text(
        "import sys\n"
        "def resize(n):\n    print(f'resizing {n}')\n    print(f'warning {n}', file=sys.stderr)\n")
    env = {k: v for k, v in djctl_env.items() if k != "PYTHONUNBUFFERED"}
    env.update(DJ_APP="photos", PYTHONPATH=f"{app}:{djctl_env['PYTHONPATH']}")
    ids = [forge(engine, {"call": "photos.jobs:resize", "args": [n], "kwargs": {}}) for n in range(5)]

    worker = start(procs, tmp_path, env, "work", "--exit-on-complete", "--read-ahead", "5")
    assert worker.wait() == 0, worker.lines
    said = [line for line in worker.lines if "Starting" not in line and "Exiting" not in line]
    for n, job in enumerate(ids):
        at = said.index(next(line for line in said if line.endswith(f"Job resize (id={job}) RUN")))
        # (Between the job's stdout and stderr, the job's own buffering decides.)
        assert sorted(said[at + 1:at + 3]) == [f"resizing {n}", f"warning {n}"], said
        # COMPLETED is said once the database has the outcome: after the job's output,
        # and (with jobs claimed ahead) possibly after the next job's RUN line.
        done = re.compile(rf"\[Worker\(host:\S+ pid:\d+\)\] Job resize \(id={job}\) COMPLETED after \d+\.\d{{4}}")
        assert [i for i, line in enumerate(said) if done.fullmatch(line)][0] > at + 2, said


def test_a_long_running_worker_says_its_throughput(engine, tmp_path):
    out = tmp_path / "out"
    for i in range(3):
        djctl.enqueue(jobs.Touch(str(out), f"k{i}"))
    djctl.enqueue(jobs.Fail())
    log: list[str] = []
    djctl.Worker(log=log.append, exit_on_complete=True, stats_every=0.0, sleep_delay=0.2).start()
    assert any(line.startswith("*** Starting") for line in log)
    said = [line.split("] ", 1)[1] for line in log if line.startswith("[Worker(")]
    assert any(line.endswith(" RUN") for line in said), said
    counted = [line for line in said if " jobs processed at " in line]
    assert counted, said
    totals = [re.fullmatch(r"(\d+) jobs processed at \d+\.\d{4} j/s, (\d+) failed", line) for line in counted]
    assert all(totals) and sum(int(m[1]) for m in totals) == 4 and sum(int(m[2]) for m in totals) == 1, counted


def test_a_job_given_back_runs_when_the_same_worker_claims_it_again(db_url, djctl_env, tmp_path, procs, engine):
    out, gate = tmp_path / "out", tmp_path / "gate"
    slow = djctl.enqueue(jobs.Gate(str(out), str(gate)))
    quick = djctl.enqueue(jobs.Touch(str(out), "quick"), priority=1)
    worker = start(procs, tmp_path, djctl_env, "work", "--exit-on-complete", "--read-ahead", "5")
    wait_for(lambda: any("gave back 1 job(s) claimed ahead of it" in line for line in worker.lines),
             timeout=DEADLINE)
    gate.touch()
    assert worker.wait() == 0, worker.lines
    assert [line.split()[0] for line in out.read_text().splitlines()] == ["start", "end", "quick"]
    assert row(engine, slow) is None and row(engine, quick) is None
    assert any(f"Job Touch (id={quick}) COMPLETED after " in line for line in worker.lines), worker.lines
