"""The CLI of SPEC §1 and §3, run as a user runs it: work, workoff, clear,
retry, stats [--json], and bad input (one line, exit 2, nothing changed)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, update

import djctl
from djctl import config
from djctl.queue.schema import delayed_jobs
from djctl.worker import identity
from tests import jobs
from tests.support.commands import ROOT, djctl_cmd
from tests.support.rows import count, utcnow

HOST = identity.hostname()


def run(env: dict, *args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(djctl_cmd(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(db_url, capsys, monkeypatch):
    """Runs ``djctl ARGS`` in this process, through click's own main(), on ``db_url``."""
    from djctl.cli.main import main

    monkeypatch.setenv("DJ_DATABASE_URL", db_url)
    monkeypatch.setenv("DJ_APP", "tests.jobs")
    monkeypatch.delenv("DATABASE_URL", raising=False)

    def invoke(*args: str, env: dict | None = None) -> Result:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        try:
            main.main(list(args), prog_name="djctl")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            for key in env or {}:
                monkeypatch.delenv(key)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return invoke


def table(engine) -> list[tuple]:
    with engine.connect().execution_options(sqlite_read=True) as conn:
        return [tuple(r) for r in conn.execute(select(delayed_jobs).order_by(delayed_jobs.c.id))]


def set_rows(engine, ids, **values) -> None:
    with engine.begin() as conn:
        conn.execute(update(delayed_jobs).where(delayed_jobs.c.id.in_(ids)).values(**values))


def test_the_cli_reads_the_database_url_in_precedence_order(tmp_path):
    """Five databases, holding 1 to 5 jobs: which one `djctl stats` counts shows where the URL came from."""
    cwd = tmp_path / "app"
    cwd.mkdir()
    urls = {}
    for source in ["flag", "dj", "plain", "toml"]:
        urls[source] = f"sqlite:///{tmp_path / source}.sqlite3"
    urls["default"] = f"sqlite:///{cwd / 'delayed_jobs.sqlite3'}"
    previous = config._current
    try:
        for n, source in enumerate(["flag", "dj", "plain", "toml", "default"], start=1):
            djctl.configure(database_url=urls[source])
            djctl.enqueue_many([jobs.Fail()] * n)
    finally:
        config._current = previous
    base = {k: v for k, v in os.environ.items() if k not in ("DJ_DATABASE_URL", "DATABASE_URL")}
    base["PYTHONPATH"] = str(ROOT)

    def ready(env_extra: dict, *flags: str, toml: bool) -> subprocess.CompletedProcess:
        pyproject = cwd / "pyproject.toml"
        if toml:
            pyproject.write_text(f'[tool.djctl]\ndatabase_url = "{urls["toml"]}"\n')
        elif pyproject.exists():
            pyproject.unlink()
        return subprocess.run(djctl_cmd(*flags, "stats", "--json"), env={**base, **env_extra}, cwd=cwd,
                              capture_output=True, text=True, timeout=60)

    everything = {"DJ_DATABASE_URL": urls["dj"], "DATABASE_URL": urls["plain"]}
    cases = [
        (everything, ("--database-url", urls["flag"]), True, 1),
        (everything, (), True, 2),
        ({"DATABASE_URL": urls["plain"]}, (), True, 3),
        ({}, (), True, 4),
        ({}, (), False, 5),
    ]
    for env_extra, flags, toml, expected in cases:
        r = ready(env_extra, *flags, toml=toml)
        assert r.returncode == 0, r.stderr
        assert sum(d["ready"] for d in json.loads(r.stdout)) == expected, (env_extra, flags, toml)


# -- work and workoff ----------------------------------------------------------------------------

def test_work_announces_itself_and_works_the_named_queues(db_url, djctl_env, tmp_path):
    out = tmp_path / "out"
    a = djctl.enqueue(jobs.Touch(str(out), "a"), queue="a")
    djctl.enqueue(jobs.Touch(str(out), "b"), queue="b")
    c = djctl.enqueue(jobs.Touch(str(out), "c"), queue="c", priority=-1)
    proc = subprocess.Popen(djctl_cmd("work", "--queues", "a,c", "--exit-on-complete"), env=djctl_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    me = f"host:{HOST} pid:{proc.pid}"
    said = [line.rsplit(" after ", 1)[0] for line in stdout.splitlines()]
    assert said[0] == f"*** Starting job worker {me}" and said[-1] == f"*** Exiting job worker {me}"
    # Each job's RUN comes before its COMPLETED (said once recorded, so with jobs claimed
    # ahead the next job's RUN may come between); c (priority -1) runs first.
    run = [said.index(f"[Worker({me})] Job Touch (id={j}) RUN") for j in (c, a)]
    done = [said.index(f"[Worker({me})] Job Touch (id={j}) COMPLETED") for j in (c, a)]
    assert run[0] < run[1] and run[0] < done[0] and run[1] < done[1] and len(said) == 6, said
    assert out.read_text() == "c\na\n"
    assert count(db_url) == 1


def test_work_priority_options(db_url, cli, tmp_path):
    out = tmp_path / "out"
    for p in (-1, 0, 5, 9):
        djctl.enqueue(jobs.Touch(str(out), f"p{p}"), priority=p)
    r = cli("work", "--min-priority", "0", "--max-priority", "5", "--exit-on-complete")
    assert r.returncode == 0, r.stderr
    assert out.read_text() == "p0\np5\n"


def test_workoff_works_everything_ready_and_reports(db_url, djctl_env, tmp_path, engine):
    out = tmp_path / "out"
    ids = djctl.enqueue_many([jobs.Touch(str(out), f"k{i}") for i in range(3)])
    failing = djctl.enqueue(jobs.Fail("nope"))
    later = djctl.enqueue(jobs.Touch(str(out), "later"), run_at=djctl.now() + dt.timedelta(hours=1))
    r = run(djctl_env, "workoff")
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"4 jobs processed at [0-9.]+ j/s, 1 failed", r.stdout.splitlines()[-1])
    assert f"Job Fail (id={failing}) FAILED (0 prior attempts) with RuntimeError: nope" in r.stdout
    assert out.read_text() == "k0\nk1\nk2\n"
    rows = {row[0]: row for row in table(engine)}
    assert set(rows) == {failing, later} and not set(ids) & set(rows)


# -- clear, retry, stats ----------------------------------------------------------------------------

def test_clear_deletes_jobs_of_a_queue_or_all(db_url, cli):
    djctl.enqueue_many([jobs.Fail()] * 2, queue="mail")
    djctl.enqueue_many([jobs.Fail()] * 3)
    r = cli("clear", "--queue", "mail")
    assert (r.returncode, r.stdout) == (0, "Deleted 2 jobs from queue mail.\n")
    assert count(db_url) == 3
    r = cli("clear")
    assert (r.returncode, r.stdout) == (0, "Deleted 3 jobs.\n")
    assert count(db_url) == 0


def test_retry_ids_failed_and_failed_in_a_queue(db_url, cli, engine):
    a, b = djctl.enqueue_many([jobs.Fail()] * 2, queue="mail")
    c = djctl.enqueue(jobs.Fail())
    scheduled = djctl.enqueue(jobs.Fail(), run_at=djctl.now() + dt.timedelta(hours=2))
    past = utcnow() - dt.timedelta(minutes=1)
    set_rows(engine, [a, b, c], failed_at=past, attempts=25, last_error="RuntimeError: boom")
    before = table(engine)

    r = cli("retry", str(a), "999999")  # one unknown id: nothing is retried
    assert r.returncode == 2 and r.stderr == "djctl: no job to retry with id 999999 (unknown, or running now)\n"
    assert table(engine) == before

    r = cli("retry", str(scheduled))  # never ran: nothing to retry, and its run_at stands
    assert r.returncode == 2 and r.stderr.startswith(f"djctl: job {scheduled} has not failed: nothing to retry")
    assert table(engine) == before

    r = cli("retry", "--failed", "--queue", "mail")
    assert (r.returncode, r.stdout) == (0, "Retrying 2 jobs.\n")
    assert count(db_url, "failed_at IS NULL AND attempts = 0 AND queue = 'mail'") == 2
    assert count(db_url, "failed_at IS NOT NULL") == 1

    r = cli("retry", "--failed")
    assert (r.returncode, r.stdout) == (0, "Retrying 1 job.\n")
    assert count(db_url, "failed_at IS NULL AND attempts = 0 AND locked_at IS NULL") == 4
    assert count(db_url, "id = :i AND run_at > :now", i=scheduled, now=utcnow()) == 1
    # The last error stays readable until the job runs again.
    assert count(db_url, "last_error = 'RuntimeError: boom'") == 3


def test_stats_counts_per_queue_and_priority(db_url, cli, engine):
    djctl.enqueue_many([jobs.Fail()] * 2)
    djctl.enqueue(jobs.Fail(), run_at=djctl.now() + dt.timedelta(hours=1))
    running = djctl.enqueue(jobs.Fail(), queue="mail")
    failed = djctl.enqueue(jobs.Fail(), queue="mail", priority=5)
    djctl.enqueue(jobs.Fail(), queue="mail", priority=-3)
    set_rows(engine, [running], locked_at=utcnow(), locked_by="host:x pid:1")
    set_rows(engine, [failed], failed_at=utcnow())

    r = cli("stats", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    none = {"waiting": 0, "waiting_on": {}, "paused": False}  # no job waits on a key or a throttle; none paused
    assert data == [
        {"queue": "default", "priority": 0, "ready": 2, "scheduled": 1, "running": 0, "failed": 0, **none},
        {"queue": "mail", "priority": -3, "ready": 1, "scheduled": 0, "running": 0, "failed": 0, **none},
        {"queue": "mail", "priority": 0, "ready": 0, "scheduled": 0, "running": 1, "failed": 0, **none},
        {"queue": "mail", "priority": 5, "ready": 0, "scheduled": 0, "running": 0, "failed": 1, **none},
    ]
    assert all(list(d) == ["queue", "priority", "ready", "scheduled", "running", "failed", "waiting", "waiting_on",
                           "paused"] for d in data)

    r = cli("stats")
    assert r.returncode == 0, r.stderr
    assert [line.split() for line in r.stdout.splitlines()] == [
        ["queue", "priority", "ready", "scheduled", "running", "failed"],
        ["default", "0", "2", "1", "0", "0"],
        ["mail", "-3", "1", "0", "0", "0"],
        ["mail", "0", "0", "0", "1", "0"],
        ["mail", "5", "0", "0", "0", "1"],
    ]


def test_stats_of_an_empty_queue(db_url, cli):
    r = cli("stats", "--json")
    assert (r.returncode, r.stdout) == (0, "[]\n")


# -- bad input ---------------------------------------------------------------------------------------

BAD = [
    (("retry",), "give job IDs or --failed"),
    (("retry", "1", "--failed"), "give job IDs or --failed"),
    (("retry", "--queue", "mail", "1"), "--queue goes with --failed"),
    (("retry", "abc"), "'abc' is not a valid integer"),
    (("work", "--min-priority", "high"), "'high' is not a valid integer"),
    (("workoff", "--sleep-delay", "-1"), "--sleep-delay"),
    (("workoff", "--max-attempts", "0"), "--max-attempts"),
    (("work", "--queues", ","), "name at least one queue"),
    (("clear", "--bogus"), "No such option '--bogus'"),
    (("nosuchcommand",), "No such command 'nosuchcommand'"),
    (("db", "downgrade"), "No such command 'downgrade'"),
    (("--database-url", "not a url", "stats"), "is not a URL"),
    (("--database-url", "mongodb://h/db", "clear"), "djctl supports sqlite, postgresql and mysql"),
    (("--database-url", "sqlite://", "clear"), "in-memory SQLite"),
    (("--app", "no_such_app_pkg", "workoff"), "cannot import application package 'no_such_app_pkg'"),
    (("stats", "--json", "extra"), "unexpected extra argument"),
]


def test_bad_input_is_one_line_exit_2_and_changes_nothing(db_url, cli, djctl_env, engine, db_kind):
    djctl.enqueue_many([jobs.Fail()] * 3, queue="mail")
    failed = djctl.enqueue(jobs.Fail())
    set_rows(engine, [failed], failed_at=utcnow(), attempts=25)
    before = table(engine)
    cases = [(args, words, {}) for args, words in BAD]
    cases.append((("stats",), "DJ_SLEEP_DELAY: invalid value 'soon'", {"DJ_SLEEP_DELAY": "soon"}))
    for args, words, env in cases:
        r = cli(*args, env=env)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("djctl: "), (args, r.stderr)
        assert words in r.stderr, (args, r.stderr)
        assert r.stdout == "", args
    assert table(engine) == before
    if db_kind == "sqlite":
        # The same, as separate processes, for a few.
        procs = [(args, words, subprocess.Popen(djctl_cmd(*args), env=djctl_env, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, text=True))
                 for args, words in BAD if args in (("retry", "abc"), ("--app", "no_such_app_pkg", "workoff"))]
        for args, words, proc in procs:
            stdout, stderr = proc.communicate(timeout=60)
            assert (proc.returncode, stdout) == (2, ""), (args, stderr)
            assert stderr.count("\n") == 1 and stderr.startswith("djctl: ") and words in stderr, (args, stderr)
        assert table(engine) == before


def test_a_database_that_does_not_answer_is_one_line(capsys, monkeypatch):
    from djctl.cli.main import main

    previous = config._current
    try:
        for url in ("postgresql://nobody@127.0.0.1:1/nothing", "mysql://nobody@127.0.0.1:1/nothing"):
            with pytest.raises(SystemExit) as exit:
                main.main(["--database-url", url, "stats"], prog_name="djctl")
            assert exit.value.code == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith("djctl: cannot connect to "), err
    finally:
        config._current = previous


def test_stats_shows_jobs_waiting_on_a_key_and_the_key(db_url, cli, engine):
    from djctl.queue.gates import Gates

    djctl.enqueue_many([jobs.Fail()] * 3, concurrency_key="account:42")
    djctl.enqueue(jobs.Fail())
    with engine.begin() as conn:  # one of the key's jobs runs elsewhere: its only slot is held
        assert len(Gates(engine.dialect.name, "host:x pid:1").claim(conn, 5, utcnow())) == 1
    data = json.loads(cli("stats", "--json").stdout)
    assert [(d["ready"], d["waiting"], d["running"], d["waiting_on"]) for d in data] == \
        [(1, 2, 1, {"concurrency:account:42": 2})]
    out = cli("stats").stdout.splitlines()
    assert out[0].split() == ["queue", "priority", "ready", "waiting", "scheduled", "running", "failed"]
    assert out[1].split() == ["default", "0", "1", "2", "0", "1", "0"]
    assert out[3] == "2 jobs wait for a slot of account:42"
