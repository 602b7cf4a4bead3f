"""The log as users read it (``djctl logs``), and ``up --reload``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

import pytest

import djctl
from tests.jobs import Fail, Touch
from tests.support.app import LINE, App, heavy, running_app
from tests.support.rows import count, locked
from tests.support.waiting import wait_for

LINES = 1000
# Says it is ready, waits for the go file, then talks fast (forcing rotations), then idles.
TALK = f"""import os, time
print("ready", flush=True)
while not os.path.exists("go"):
    time.sleep(0.02)
for i in range({LINES}):
    print("n", i, flush=True)
    time.sleep(0.002)
time.sleep(600)
"""


@pytest.fixture
def app(db_kind, request, tmp_path):
    heavy(db_kind)
    # One app: the loop resumes running_app after the test, which cleans it up.
    for a in running_app(request, tmp_path, procfile=f"worker: djctl work\ntalk: {sys.executable} talk.py\n"):
        (a.dir / "talk.py").write_text(TALK)
        (a.dir / "pyproject.toml").write_text("[tool.djctl]\nlog-max-bytes = 8192\nlog-backups = 5\n")
        yield a


@pytest.fixture
def json_app(db_kind, request, tmp_path):
    heavy(db_kind)
    for a in running_app(request, tmp_path, DJ_LOG_FORMAT="json"):
        # Rotations enough to cross, backups enough that a follower on a busy machine keeps up.
        (a.dir / "pyproject.toml").write_text("[tool.djctl]\nlog-max-bytes = 16384\nlog-backups = 50\n")
        yield a


class Follower:
    """``djctl logs -t ...`` in a subprocess, its lines collected on a thread."""

    def __init__(self, app: App, *args: str) -> None:
        self.proc = app.popen("logs", "-t", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def has(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in list(self.lines))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def test_logs_format_filters_follow_and_rotation(app, tmp_path):
    """Acceptance 7."""
    app.run("up", "--formation", "worker=2 talk=0")
    app.wait_up(2)
    # -n 1: a follower prints one line as soon as it follows, so we know it does.
    everything = Follower(app, "-n", "1")
    wait_for(lambda: everything.lines, 30, message="the follower to start")
    djctl.enqueue_many([Touch(str(tmp_path / "runs.txt"), str(i)) for i in range(20)])
    wait_for(lambda: count(app.db_url) == 0, 30, message="jobs worked off")

    app.cli("scale", "worker=3")
    wait_for(lambda: everything.has(r"app\[worker\.3\]: \*\*\* Starting job worker host:\S+ pid:\d+$"), 30,
             message="-t to show the new worker's first line")
    assert everything.has(r"djctl\[worker\.3\]: Starting process with command `djctl work`$")

    shown = app.cli("logs", "-n", "1000").stdout.splitlines()
    assert shown and all(LINE.fullmatch(line) for line in shown), [x for x in shown if not LINE.fullmatch(x)]
    assert any("app[worker.1]: [Worker(host:" in line and "COMPLETED" in line for line in shown) or \
        any("app[worker.2]: [Worker(host:" in line for line in shown)
    only2 = app.cli("logs", "-p", "worker.2").stdout.splitlines()
    assert only2 and all(re.search(r" (app|djctl)\[worker\.2\]: ", line) for line in only2)
    assert any("app[worker.2]: *** Starting job worker" in line for line in only2)
    events = app.cli("logs", "-s", "djctl", "-d", "worker.1").stdout.splitlines()
    assert events and all(" djctl[worker.1]: " in line for line in events)
    assert len(app.cli("logs", "-n", "3").stdout.splitlines()) == 3

    # A fast talker forces rotation after rotation; the follower must get every line, in order.
    app.cli("scale", "talk=1")
    wait_for(lambda: app.log_has(r"app\[talk\.1\]: ready$"), 30, message="the talker to start")
    talk = Follower(app, "-n", "1", "-p", "talk.1", "-s", "app")
    wait_for(lambda: talk.lines, 30, message="the talk.1 follower to start")
    assert len(talk.lines) == 1 and talk.lines[0].endswith(" app[talk.1]: ready")
    (app.dir / "go").touch()
    wait_for(lambda: talk.has(rf"app\[talk\.1\]: n {LINES - 1}$"), 60, message="the talker's last line")
    numbers = [int(line.rsplit(" ", 1)[1]) for line in talk.lines[1:]]
    assert numbers == list(range(LINES))
    assert (app.state / "djctl.log.3").exists()  # it did rotate, several times
    for f in (everything, talk):
        f.stop()
        assert f.proc.stderr.read() == ""

    # `djctl logs -t | head -n 1`: once the reader is gone, the next line ends djctl quietly.
    head = app.popen("logs", "-t", "-n", "1", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert head.stdout.readline()
    head.stdout.close()
    app.cli("scale", "worker=2")  # writes more lines, which djctl then fails to write
    assert head.wait(30) == 0
    assert head.stderr.read() == b""
    out = subprocess.run(["sh", "-c", "python -m djctl logs -n 500 | head -n 2"],
                         cwd=app.dir, env={**app.env, "PATH": _path(app)}, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stderr == "" and len(out.stdout.splitlines()) == 2
    app.cli("down")


def test_json_log_lines_parse_carry_job_fields_and_follow_through_rotation(json_app, tmp_path):
    """Acceptance 4 of the monitoring issue: log_format = json writes JSON lines;
    ``djctl logs --json -p worker -t`` follows them through rotation, job events with
    their id, class, queue, outcome and run time; ``djctl logs`` still prints Heroku's lines."""
    app = json_app
    app.run("up", "--formation", "worker=2")
    app.wait_up(2)
    follower = Follower(app, "-n", "1", "--json", "-p", "worker")
    wait_for(lambda: follower.lines, 30, message="the follower to start")
    ids = djctl.enqueue_many([Touch(str(tmp_path / "runs.txt"), str(i)) for i in range(200)], queue="mail")
    failing = djctl.enqueue(Fail("no luck"))

    def outcomes(kind: str) -> list[dict]:
        return [r for r in map(json.loads, list(follower.lines)) if r.get("outcome") == kind]

    def followed() -> bool:
        lines = list(follower.lines)
        return sum('"outcome":"completed"' in line for line in lines) == len(ids) and \
            any('"outcome":"failed"' in line for line in lines)

    wait_for(followed, 90, interval=0.2, message="every job event followed")
    records = [json.loads(line) for line in follower.lines]  # every line parses
    assert all({"ts", "source", "process", "level", "message"} <= set(r) for r in records)
    assert all(re.fullmatch(r"worker\.[12]", r["process"]) for r in records)
    assert all(r["ts"].endswith("+00:00") for r in records)
    completed = outcomes("completed")
    assert sorted(r["job_id"] for r in completed) == ids
    assert all(r["class"] == "Touch" and r["queue"] == "mail" and r["level"] == "info"
               and isinstance(r["run_time"], float) and r["run_time"] >= 0 for r in completed)
    failed = outcomes("failed")[0]  # retried 6 s later: a slow run may follow a second attempt
    assert (failed["job_id"], failed["class"], failed["queue"], failed["level"]) == (failing, "Fail", "default",
                                                                                     "warning")
    assert failed["message"].startswith(f"Job Fail (id={failing}) failed after ")
    assert (app.state / "djctl.log.3").exists()  # it did rotate, several times
    follower.stop()
    assert follower.proc.stderr.read() == ""

    # The file is JSON lines; djctl logs without --json prints Heroku's lines from it.
    raw = (app.state / "djctl.log").read_text().splitlines()
    assert raw and all(json.loads(line)["ts"] for line in raw)
    shown = app.cli("logs", "-n", "50").stdout.splitlines()
    assert len(shown) == 50 and all(LINE.fullmatch(line) for line in shown), shown
    app.run("down")


def _path(app: App) -> str:
    return os.path.dirname(sys.executable) + os.pathsep + app.env.get("PATH", "")


def test_reload_restarts_workers_one_by_one_without_killing_a_job(app, tmp_path):
    app.env.update(DJ_GRACE_PERIOD="30")
    app.run("up", "--reload", "--formation", "worker=2")
    before = app.wait_up(2)
    runs = tmp_path / "runs.txt"
    job = djctl.enqueue(Touch(str(runs), "during", seconds=2))
    wait_for(lambda: locked(app.db_url), message="the job claimed")

    (app.dir / "code.py").write_text("VERSION = 2\n")
    after = wait_for(lambda: (now := app.up_pids()) and len(now) == 2 and
                     not set(now.values()) & set(before.values()) and now, 60,
                     message="both workers restarted")
    assert runs.read_text().split() == ["during"]  # finished once, not killed mid-job
    assert count(app.db_url) == 0 and job not in dict(locked(app.db_url))
    log = app.log()
    assert any(re.search(r"djctl\[djctl\]: Restarting \(code changed: code\.py\)$", line) for line in log)
    assert not any("SIGKILL" in line or "status 137" in line for line in log)

    # One by one: the second worker is stopped only after the first is back up.
    def at(pattern: str) -> int:
        found = [i for i, line in enumerate(log) if re.search(pattern, line)]
        assert found, f"no line matching {pattern!r} in the log:\n" + "\n".join(log)
        return found[0]

    first, second = sorted(before, key=lambda n: at(rf"djctl\[{re.escape(n)}\]: Stopping all"))
    assert at(rf"djctl\[{first}\]: Stopping all") < at(rf"djctl\[{first}\]: Process exited with status 0$")
    back_up = max(i for i, line in enumerate(log)
                  if re.search(rf"djctl\[{first}\]: State changed from starting to up", line))
    assert back_up < at(rf"djctl\[{second}\]: Stopping all")
    assert set(after) == {"worker.1", "worker.2"}
    app.cli("down")
