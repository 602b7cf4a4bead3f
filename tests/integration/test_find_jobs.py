"""``djctl jobs`` and ``djctl show``, run as a user runs them: every state, every filter,
one job whole (its arguments read as JSON, never run), on every database."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

from sqlalchemy import text

import djctl
from djctl import api
from djctl.worker.worker import Worker
from tests.jobs import Fail, Touch, add_line
from tests.support.commands import djctl_cmd


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(djctl_cmd(*args), env=env, capture_output=True, text=True, timeout=60)


def _jobs(env: dict, *args: str) -> list[dict]:
    r = run(env, "jobs", "--json", *args)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return json.loads(r.stdout)


def _fill(tmp_path) -> dict[str, int]:
    """One job in each state, over three queues; the running one locked as a worker would."""
    ids = {
        "failed": djctl.enqueue(Fail("the disk is full"), queue="reports"),
        "ready": djctl.enqueue(Touch(str(tmp_path / "t"), "pineapple"), queue="mail", priority=3),
        "scheduled": djctl.enqueue(Touch(str(tmp_path / "t"), "later"), run_at=djctl.now() + timedelta(days=1)),
        "running": djctl.delay(add_line)(str(tmp_path / "t"), "now"),
    }
    assert Worker(queues=["reports"], max_attempts=1, log=lambda line: None).work_off(num=5) == (0, 1)
    with api.engine().begin() as conn:
        conn.execute(text("UPDATE delayed_jobs SET locked_at = :now, locked_by = 'host:elsewhere pid:7', "
                          "attempts = 1 WHERE id = :id"), {"now": api.utc_naive(djctl.now()), "id": ids["running"]})
    return ids


def test_jobs_lists_each_state_and_filters(db_url, djctl_env, tmp_path):
    ids = _fill(tmp_path)

    every = _jobs(djctl_env)
    assert [(j["id"], j["state"]) for j in every] == [
        (ids["running"], "running"), (ids["ready"], "ready"), (ids["scheduled"], "scheduled"),
        (ids["failed"], "failed")]
    failed = every[-1]
    assert (failed["class"], failed["queue"], failed["attempts"]) == ("Fail", "reports", 1)
    assert failed["error"] == "RuntimeError: the disk is full"
    assert every[0]["locked_by"] == "host:elsewhere pid:7" and every[2]["queue"] == "default"

    for state in ("running", "ready", "scheduled", "failed"):
        assert [j["id"] for j in _jobs(djctl_env, "--state", state)] == [ids[state]]
    assert [j["id"] for j in _jobs(djctl_env, "--queue", "mail")] == [ids["ready"]]
    assert [j["id"] for j in _jobs(djctl_env, "--queue", "default")] == [ids["running"], ids["scheduled"]]
    assert [j["id"] for j in _jobs(djctl_env, "--class", "touch")] == [ids["ready"], ids["scheduled"]]
    assert [j["id"] for j in _jobs(djctl_env, "--class", "pineapple")] == []   # arguments are no class
    assert [j["id"] for j in _jobs(djctl_env, "--search", "PINEAPPLE")] == [ids["ready"]]
    assert [j["id"] for j in _jobs(djctl_env, "--search", "disk is full")] == [ids["failed"]]
    assert [j["id"] for j in _jobs(djctl_env, "--search", str(ids["scheduled"]))] == [ids["scheduled"]]
    assert [j["id"] for j in _jobs(djctl_env, "--limit", "2")] == [ids["running"], ids["ready"]]
    assert _jobs(djctl_env, "--queue", "mail", "--state", "failed") == []

    table = run(djctl_env, "jobs", "--state", "failed").stdout.splitlines()
    assert table[0].split() == ["id", "state", "class", "queue", "pri", "att", "run_at", "locked_by", "last_error"]
    assert table[1].split()[:6] == [str(ids["failed"]), "failed", "Fail", "reports", "0", "1"]
    assert table[1].endswith("RuntimeError: the disk is full")


def test_show_prints_one_job_whole_without_running_it(db_url, djctl_env, tmp_path):
    ids = _fill(tmp_path)
    r = run(djctl_env, "show", str(ids["failed"]))
    assert r.returncode == 0 and r.stderr == ""
    out = r.stdout
    assert out.startswith(f"Job {ids['failed']} (Fail): failed\n  class: tests.jobs:Fail\n")
    assert '  state: {"message": "the disk is full"}' in out
    for column in ("priority", "attempts", "run_at", "locked_at", "locked_by", "failed_at", "queue",
                   "created_at", "updated_at", "handler"):
        assert f"\n{column} " in out, column
    assert "last_error:\nRuntimeError: the disk is full\nTraceback (most recent call last):" in out
    assert out.rstrip().endswith("RuntimeError: the disk is full")

    whole = json.loads(run(djctl_env, "show", str(ids["ready"]), "--json").stdout)
    assert (whole["id"], whole["state"], whole["class"], whole["name"]) == (ids["ready"], "ready", "tests.jobs:Touch",
                                                                         "Touch")
    assert whole["arguments"] == {"state": {"path": str(tmp_path / "t"), "key": "pineapple", "seconds": 0.0}}
    assert whole["columns"]["priority"] == 3 and whole["columns"]["queue"] == "mail"
    assert not (tmp_path / "t").exists(), "showing a job ran it"


def test_show_reads_a_handler_that_names_code_it_may_not_import(db_url, djctl_env):
    with api.engine().begin() as conn:
        conn.execute(text("INSERT INTO delayed_jobs (priority, attempts, handler, run_at, queue, created_at, "
                          "updated_at) VALUES (0, 0, :h, :now, 'default', :now, :now)"),
                     {"h": '{"call":"os:system","args":["touch /tmp/djctl-pwned"],"kwargs":{}}',
                      "now": api.utc_naive(djctl.now())})
        job_id = conn.execute(text("SELECT MAX(id) FROM delayed_jobs")).scalar_one()
        conn.execute(text("INSERT INTO delayed_jobs (priority, attempts, handler, run_at, queue, created_at, "
                          "updated_at) VALUES (0, 0, 'not json', :now, 'default', :now, :now)"),
                     {"now": api.utc_naive(djctl.now())})
    out = run(djctl_env, "show", str(job_id)).stdout
    assert "  class: os:system\n" in out and '  args: ["touch /tmp/djctl-pwned"]' in out
    broken = json.loads(run(djctl_env, "show", str(job_id + 1), "--json").stdout)
    assert broken["class"] == "?" and broken["decode_error"].startswith("handler does not decode")
