"""Issue 8, acceptance 7: a corpus of bad input — CLI arguments, Procfiles, settings
([tool.djctl] and DJ_*), database URLs, state and pid files — each answered with one
clear line on stderr and a non-zero exit (2 for usage), the queue unchanged; and, by
hypothesis, handlers (the decoder raises nothing but HandlerError) and the scale grammar
(nothing but ScaleError, one line)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

import djctl
from djctl import api, payload
from djctl.daemon.formation import MAX_PER_TYPE, ScaleError, parse_scale
from djctl.handlers import load
from djctl.payload import Decoder, HandlerError
from djctl.queue import stats
from tests.chaos.conftest import make_app
from tests.jobs import Fail, Touch
from tests.support.commands import djctl_cmd

OTHER_UID = 65534
BAD_PROCFILE = "worker djctl work\n"


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    code: int
    words: str
    env: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    """Files to write in the application directory first (``.djctl/...`` for state files)."""


SETTINGS = "pyproject.toml"
FORMATION = ".djctl/formation.json"
PID = ".djctl/djctl.pid"

CASES = [
    # CLI arguments
    Case(("scale", "worker=abc"), 2, "'abc' is not a whole number"),
    Case(("scale", "worker=-1"), 2, "cannot be negative"),
    Case(("scale", "web=1"), 2, "unknown process type 'web'; known types: worker"),
    Case(("scale", "worker"), 2, "'worker' is not a scale"),
    Case(("scale", f"worker={MAX_PER_TYPE + 1}"), 2, f"at most {MAX_PER_TYPE} processes per type"),
    Case(("scale", "worker-5"), 2, "worker is at 1 and cannot go below 0"),
    Case(("retry", "abc"), 2, "'abc' is not a valid integer"),
    Case(("retry",), 2, "give job IDs or --failed"),
    Case(("retry", "1", "--failed"), 2, "give job IDs or --failed"),
    Case(("retry", "--queue", "mail", "5"), 2, "--queue goes with --failed"),
    Case(("retry", "999999"), 2, "no job to retry with id 999999"),
    Case(("jobs", "--state", "stuck"), 2, "'stuck' is not one of 'running', 'ready', 'scheduled', 'failed'"),
    Case(("jobs", "--limit", "0"), 2, "--limit"),
    Case(("jobs", "--queue", "nosuch"), 2, "no job is in queue 'nosuch'"),
    Case(("jobs", "--search", " "), 2, "give a non-empty search text"),
    Case(("jobs", "--class", ""), 2, "give a non-empty class name"),
    Case(("show",), 2, "Missing argument 'ID'"),
    Case(("show", "abc"), 2, "'abc' is not a valid integer"),
    Case(("show", "999999"), 2, "no job with id 999999"),
    Case(("show", "1", "2"), 2, "unexpected extra argument"),
    Case(("work", "--sleep-delay", "0"), 2, "--sleep-delay"),
    Case(("work", "--max-attempts", "0"), 2, "--max-attempts"),
    Case(("workoff", "--max-run-time", "soon"), 2, "--max-run-time"),
    Case(("workoff", "--queues", " , "), 2, "name at least one queue"),
    Case(("logs", "-n", "-5"), 2, "-n"),
    Case(("logs", "-s", "nope"), 2, "'nope' is not one of"),
    Case(("restart", "-p", "worker", "-d", "worker.1"), 2, "give -p TYPE or -d NAME, not both"),
    Case(("nosuchcommand",), 2, "No such command 'nosuchcommand'"),
    Case(("stats", "--json", "extra"), 2, "unexpected extra argument"),
    Case(("ps", "--bogus"), 2, "No such option '--bogus'"),
    Case(("--app", "no_such_app_pkg", "workoff"), 2, "cannot import application package 'no_such_app_pkg'"),
    # pause, resume, cancel (issue 17): jobs 1-3 wait in mail, FAILED_ID has failed
    Case(("pause",), 2, "name the queues to pause, or --all"),
    Case(("pause", "mail", "--all"), 2, "name the queues to pause, or --all (not both)"),
    Case(("pause", "mail", "mial"), 2, "no job has ever been in queue mial: nothing paused"),
    Case(("pause", "*"), 2, "'*' is not a queue name (every queue is --all)"),
    Case(("resume",), 2, "name the queues to resume, or --all"),
    Case(("resume", "nosuch"), 2, "no queue nosuch: no job has ever been in it and it is not paused"),
    Case(("cancel",), 2, "name the IDs of the jobs to cancel"),
    Case(("cancel", "abc"), 2, "'abc' is not a valid integer"),
    Case(("cancel", "1", "999999"), 2, "no job with id 999999 (it finished, was deleted, or never existed)"),
    Case(("cancel", "2", "5"), 2, "job 5 has failed already: nothing to cancel; nothing cancelled"),
    # Procfiles
    Case(("scale", "worker=2"), 1, "Procfile line 1: expected 'name: command'", files={"Procfile": BAD_PROCFILE}),
    Case(("scale", "worker=2"), 1, "Procfile line 2: process type 'worker' is defined twice (first on line 1)",
         files={"Procfile": "worker: djctl work\nworker: djctl work --queues a\n"}),
    Case(("scale", "djctl=1"), 1, "process type 'djctl' is reserved", files={"Procfile": "djctl: djctl work\n"}),
    Case(("scale", "worker=1"), 1, "defines no process types", files={"Procfile": "# nothing here\n\n"}),
    Case(("scale", "worker=1"), 1, "is not UTF-8 text", files={"Procfile": b"worker: djctl work \xff\xfe\n"}),
    # Settings: [tool.djctl] and DJ_*
    Case(("stats",), 2, "invalid value 'soon' for sleep_delay",
         files={SETTINGS: '[tool.djctl]\nsleep-delay = "soon"\n'}),
    Case(("stats",), 2, "unknown setting 'colour' in [tool.djctl]", files={SETTINGS: "[tool.djctl]\ncolour = 1\n"}),
    Case(("stats",), 2, "not valid TOML", files={SETTINGS: "not = [toml\n"}),
    Case(("stats",), 2, "invalid value 0 for max_attempts", files={SETTINGS: "[tool.djctl]\nmax-attempts = 0\n"}),
    Case(("stats",), 2, "[tool.djctl] must be a table", files={SETTINGS: "[tool]\ndjctl = 5\n"}),
    Case(("stats",), 2, "DJ_SLEEP_DELAY: invalid value 'soon'", env={"DJ_SLEEP_DELAY": "soon"}),
    Case(("workoff",), 2, "DJ_MAX_RUN_TIME: invalid value '-5'", env={"DJ_MAX_RUN_TIME": "-5"}),
    Case(("down",), 2, "DJ_GRACE_PERIOD: invalid value 'abc'", env={"DJ_GRACE_PERIOD": "abc"}),
    Case(("workoff",), 2, "DJ_READ_AHEAD: invalid value '0'", env={"DJ_READ_AHEAD": "0"}),
    Case(("work",), 2, "heartbeat_timeout must be more than 0 seconds", env={"DJ_HEARTBEAT_TIMEOUT": "0"}),
    Case(("work",), 2, "heartbeat_interval (10s) must be under half of heartbeat_timeout (5s)",
         env={"DJ_HEARTBEAT_INTERVAL": "10", "DJ_HEARTBEAT_TIMEOUT": "5"}),
    # Database URLs
    Case(("--database-url", "not a url", "stats"), 2, "is not a URL"),
    Case(("--database-url", "mongodb://h/db", "clear"), 2, "djctl supports sqlite, postgresql and mysql"),
    Case(("--database-url", "sqlite://", "clear"), 2, "in-memory SQLite"),
    Case(("--database-url", "postgresql+psycopg2://postgres@127.0.0.1/x", "stats"), 2,
         "its driver 'psycopg2' is not installed; drop '+psycopg2' to use djctl's own"),
    Case(("--database-url", "mysql+nosuchdriver://root@127.0.0.1/x", "db", "upgrade"), 2,
         "its driver 'nosuchdriver' is not installed"),
    Case(("--database-url", "postgresql://nobody@127.0.0.1:1/nothing", "stats"), 1, "cannot connect to"),
    Case(("--database-url", "mysql://nobody@127.0.0.1:1/nothing", "clear"), 1, "cannot connect to"),
    Case(("--database-url", "sqlite:////nonexistent/djctl/jobs.sqlite3", "stats"), 1, "no database here"),
    Case(("stats",), 1, "cannot connect to",
         env={"DJ_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/no_such_db_x"}),
    # State and pid files
    Case(("scale", "worker=2"), 1, "state file", files={FORMATION: "{not json"}),
    Case(("scale", "worker+1"), 1, "is corrupt", files={FORMATION: '{"version": 1, "formation": {"worker": -3}}'}),
    Case(("scale",), 1, "is corrupt", files={FORMATION: "[]"}),
    Case(("down",), 1, "pid file", files={PID: "garbage\n"}),
    Case(("scale",), 1, "pid file", files={PID: "12 monkeys\n"}),
]

# `up` forks a daemon: these run as real processes (the others in this process).
UP_CASES = [
    Case(("up",), 1, "Procfile line 1: expected 'name: command'", files={"Procfile": BAD_PROCFILE}),
    Case(("up",), 1, "is not UTF-8 text", files={"Procfile": b"\xff: x\n"}),
    Case(("up",), 1, "state file", files={FORMATION: "{not json"}),
    Case(("up",), 1, "pid file", files={PID: "garbage\n"}),
    Case(("up", "--formation", "worker=x"), 2, "'x' is not a whole number"),
    Case(("up",), 2, "DJ_RESTART_BACKOFF: invalid value 'soon'", env={"DJ_RESTART_BACKOFF": "soon"}),
    Case(("up",), 2, "DJ_HEARTBEAT_INTERVAL: invalid value '-1'", env={"DJ_HEARTBEAT_INTERVAL": "-1"}),
    Case(("up",), 2, "heartbeat_timeout must be more than 0 seconds", env={"DJ_HEARTBEAT_TIMEOUT": "0"}),
    Case(("up",), 2, "heartbeat_interval (40s) must be under half of heartbeat_timeout (30s)",
         env={"DJ_HEARTBEAT_INTERVAL": "40"}),
    Case(("up",), 1, "cannot connect to", env={"DJ_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing"}),
    Case(("up",), 1, "is not a directory", env={"DJ_STATE_DIR": "state-is-a-file"}, files={"state-is-a-file": "x"}),
    Case(("up",), 1, f"belongs to uid {OTHER_UID}, not you", env={"DJ_STATE_DIR": "theirs"}),
]


FAILED_ID = 5


def snapshot(url: str) -> list[tuple]:
    """Every job, and the paused queues."""
    with api.engine(url).connect().execution_options(sqlite_read=True) as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM delayed_jobs ORDER BY id"))] + [
            tuple(r) for r in conn.execute(text("SELECT * FROM djctl_paused_queues ORDER BY queue"))]


def prepare(app, case: Case) -> None:
    for name, content in case.files.items():
        target = app.dir / name
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        (target.write_bytes if isinstance(content, bytes) else target.write_text)(content)
    if case.env.get("DJ_STATE_DIR") == "theirs":
        (app.dir / "theirs").mkdir()
        os.chown(app.dir / "theirs", OTHER_UID, OTHER_UID)
    app.env.update(case.env)


def one_line(case: Case, code: int, stdout: str, stderr: str) -> None:
    assert code == case.code, (case, stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and stderr.endswith("\n"), (case, stderr)
    assert lines[0].startswith("djctl: ") and case.words in lines[0], (case, stderr)
    assert stdout == "", (case, stdout)


@pytest.mark.parametrize("db_kind", ["sqlite"])
def test_bad_input_is_one_clear_line_and_changes_nothing(db_kind, request, tmp_path):
    assert len(CASES) + len(UP_CASES) >= 30
    request.getfixturevalue("db_url")  # first: the jobs below go to the database the cases run on
    djctl.enqueue_many([Touch(str(tmp_path / "never"), str(i)) for i in range(3)], queue="mail")
    djctl.enqueue(Touch(str(tmp_path / "never"), "later"), run_at=djctl.now() + timedelta(days=1))
    failed = djctl.enqueue(Fail())
    assert failed == FAILED_ID, "the cancel cases name the failed job by its id"
    with api.engine().begin() as conn:
        conn.execute(text("UPDATE delayed_jobs SET failed_at = run_at, attempts = 25, last_error = 'x' "
                          "WHERE id = :id"), {"id": failed})
    before = snapshot(request.getfixturevalue("db_url"))

    apps = []
    try:
        started = []
        for i, case in enumerate(UP_CASES):
            app = make_app(request, tmp_path, f"up{i}")
            apps.append(app)
            prepare(app, case)
            started.append((case, app.popen(*case.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        for i, case in enumerate(CASES):
            app = make_app(request, tmp_path, f"cli{i}")
            prepare(app, case)
            result = app.cli(*case.args, ok=False)
            one_line(case, result.returncode, result.stdout, result.stderr)
            assert snapshot(app.db_url) == before, case
        for case, proc in started:
            stdout, stderr = proc.communicate(timeout=120)
            one_line(case, proc.returncode, stdout, stderr)
        for app in apps:
            assert app.ours() == [], "a failed up left a process behind"
    finally:
        for app in apps:
            app.kill_everything()
    assert snapshot(request.getfixturevalue("db_url")) == before


# -- handlers: arbitrary JSON decodes to a job or raises HandlerError, nothing else ----------------

NAMES = [
    "tests.jobs:Touch", "tests.jobs:Point", "tests.jobs:Color", "tests.jobs:Level", "tests.jobs:add_line",
    "tests.jobs:Mailer", "tests.jobs:Mailer.send", "tests.jobs:Mailer.later", "tests.jobs:tomorrow",
    "tests.jobs:Touch.__init__", "tests.jobs:__builtins__", "tests.jobs:os.system", "tests.jobs:json.loads",
    "tests.jobs:djctl.enqueue", "tests.jobs:nothing_here", "tests.jobs", "tests.jobs:", ":Touch", "",
    "os:system", "builtins:eval", "subprocess:Popen", "tests.jobs_evil:x", "tests:conftest",
]
KINDS = ["tuple", "set", "frozenset", "datetime", "date", "time", "timedelta", "uuid", "decimal", "bytes",
         "enum", "orm", "obj", "pickle", ""]
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=20))
names = st.sampled_from(NAMES) | st.text(max_size=20)


def _values(children):
    tagged = st.fixed_dictionaries(
        {payload.TAG: st.sampled_from(KINDS) | st.text(max_size=5)},
        optional={"v": children, "cls": names, "pk": children, "state": children})
    return st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4) | tagged


values = st.recursive(scalars | names, _values, max_leaves=20)
handlers = st.fixed_dictionaries(
    {}, optional={"job": names | values, "call": names | values, "self": values, "args": values,
                  "kwargs": values, "state": values})


@pytest.mark.parametrize("db_kind", ["sqlite"])
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=handlers | values, raw=st.one_of(st.none(), st.text(max_size=40)))
@example(data=None, raw="[" * 100_000)
@example(data=None, raw='{"job": ' * 50_000)
@example(data=None, raw='{"call": "tests.jobs:add_line", "args": ' + "[" * 900 + "]" * 900 + "}")
@example(data={"call": "tests.jobs:add_line", "args": {payload.TAG: "orm", "cls": "tests.jobs:Touch", "pk": [1]}},
         raw=None)
@example(data={"job": "tests.jobs:Touch", "state": {"path": {payload.TAG: "enum", "cls": "tests.jobs:Color",
                                                                "v": "green"}}}, raw=None)
def test_any_handler_decodes_or_raises_handler_error(db_kind, db_url, data, raw):
    """The worker's decoder, the console's job names and the schedule list meet handlers from
    the database, which anyone with write access to it may have forged."""
    handler = raw if raw is not None else json.dumps(data)
    try:
        job = load(handler, Decoder(("tests.jobs",)))
    except HandlerError as e:
        assert str(e) and "\n" not in str(e).strip(), repr(e)
    else:
        assert callable(job.perform)
    try:
        payload.loads(handler)
    except HandlerError:
        pass
    assert isinstance(stats.job_name(handler), str)


# -- the scale grammar: a formation or one ScaleError line ---------------------------------------

tokens = (st.text(alphabet=st.sampled_from(list("worke-mail_=+0123456789 \n\t\x00éX")), max_size=15)
          | st.text(max_size=15))


@settings(max_examples=500, deadline=None)
@given(args=st.lists(tokens, max_size=4), current=st.dictionaries(st.sampled_from(["worker", "mail", "mail-out"]),
                                                                   st.integers(0, MAX_PER_TYPE)))
@example(args=["worker=" + "9" * 5000], current={})
@example(args=["mail-out-1"], current={"mail-out": 0})
def test_any_scale_argument_gives_a_formation_or_one_scale_error_line(args, current):
    types = ["worker", "mail", "mail-out"]
    try:
        formation = parse_scale(args, current, types)
    except ScaleError as e:
        message = str(e)
        assert message and "\n" not in message and len(message) < 300, message
    else:
        assert list(formation) == types
        assert all(type(n) is int and 0 <= n <= MAX_PER_TYPE for n in formation.values())


# -- the environment: an unusable runtime directory ----------------------------------------------

@pytest.mark.parametrize("db_kind", ["sqlite"])
def test_an_unusable_runtime_directory_costs_wake_ups_only(db_kind, db_url, djctl_env, tmp_path, monkeypatch):
    """Wake-up sockets and the journal of finished jobs live in XDG_RUNTIME_DIR; both are
    best effort. With it a plain file, enqueue still returns the id of the one job it
    queued (a caller retrying a failed enqueue would queue it twice) and a worker still
    works it off."""
    blocker = tmp_path / "runtime"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(blocker))
    path = tmp_path / "runs.txt"
    job = djctl.enqueue(Touch(str(path), "once"))
    assert [row[0] for row in snapshot(db_url)] == [job]
    worker = subprocess.run(djctl_cmd("workoff"), env={**djctl_env, "XDG_RUNTIME_DIR": str(blocker)},
                            capture_output=True, text=True, timeout=60)
    assert (worker.returncode, worker.stderr) == (0, "")
    assert path.read_text() == "once\n" and snapshot(db_url) == []
