"""Job outcomes reach the console as structured events, not as human log lines; and
no process output can pose as another line or source in the supervisor's log."""

from __future__ import annotations

import json
import stat
import sys
from datetime import datetime, timezone

import pytest

from djctl.daemon.client import SupervisorClient
from djctl.daemon.logs import LogLine
from djctl.tui.logtail import Throughput
from djctl.worker.identity import hostname
from tests.support.app import LINE, App, heavy
from tests.support.waiting import wait_for

# Reports three outcomes on its event pipe, plus lines that are not events and one
# that claims to come from another process; then idles.
REPORTER = """import json, os, time
fd = int(os.environ["DJCTL_EVENT_FD"])
def report(event, job_id, **extra):
    line = {"event": event, "job_id": job_id, "class": "Touch", "queue": None, "attempts": 0,
            "run_time": 0.01, "ts": "2026-11-22T10:04:05.000000+00:00", **extra}
    os.write(fd, (json.dumps(line) + "\\n").encode())
report("completed", 1)
os.write(fd, b"not an event\\n")
report("failed_permanently", 2, process="worker.9", host="elsewhere")
os.write(fd, b'{"event": "completed", "job_id": 3, "cl')
time.sleep(0.05)
os.write(fd, b'ass": "Touch", "ts": "2026-11-22T10:04:05.500000+00:00"}\\n')
print("reported", flush=True)
time.sleep(600)
"""

# Writes what a job report looks like on stdout, and output that tries to pose as
# other lines: a carriage return, ANSI escapes, line separators, no newline at all.
LIAR = """import sys, time
out = sys.stdout
out.write("[Worker(host:h pid:1)] Job Touch (id=9) COMPLETED\\n")
out.write("ok\\r2026-11-22T10:04:05.000000+00:00 djctl[worker.1]: State changed from up to crashed\\n")
out.write("\\x1b[2Jcleared\\u2028forged\\x85line\\x0bend\\r\\n")
out.write("x" * 100000)
out.flush()
time.sleep(600)
"""


@pytest.fixture
def app(db_kind, request, tmp_path):
    heavy(db_kind)
    a = App(tmp_path / "app", request.getfixturevalue("djctl_env"), request.getfixturevalue("db_url"),
            procfile=f"reporter: {sys.executable} reporter.py\nliar: {sys.executable} liar.py\n")
    (a.dir / "reporter.py").write_text(REPORTER)
    (a.dir / "liar.py").write_text(LIAR)
    yield a
    a.kill_everything()


def test_throughput_counts_reported_events_never_log_lines(app):
    app.run("up", "--formation", "reporter=1 liar=1")
    client = SupervisorClient(app.state)
    found = wait_for(lambda: (e := list(client.events(n=100))) and len(e) == 3 and e, 30,
                     message="three events in the events file")
    assert [(e["event"], e["job_id"], e["process"]) for e in found] == [
        ("completed", 1, "reporter.1"), ("failed_permanently", 2, "reporter.1"), ("completed", 3, "reporter.1")]
    assert {e["host"] for e in found} == {hostname()}
    assert stat.S_IMODE(client.events_path.stat().st_mode) == 0o600
    wait_for(lambda: app.log_has(r"app\[liar\.1\]: \[Worker\(host:h pid:1\)\] Job Touch \(id=9\) COMPLETED$"),
             30, message="the liar's fake job line in the log")

    throughput = Throughput(window=60)
    for event in client.events(n=100):
        throughput.record(event)
    done, failed = throughput.series(datetime(2026, 11, 22, 10, 4, 6, tzinfo=timezone.utc))
    assert (sum(done), sum(failed)) == (2, 1)
    app.run("down")


def test_output_cannot_pose_as_another_line_or_source(app):
    app.run("up", "--formation", "reporter=0 liar=1")
    wait_for(lambda: app.log_has(r"app\[liar\.1\]: x{65536}$"), 30, message="the first 64 KiB of the unended line")
    log = app.log()
    assert all(LINE.fullmatch(line) for line in log), [line for line in log if not LINE.fullmatch(line)]
    assert {(parsed.source, parsed.proc) for parsed in map(LogLine.parse, log)} == {
        ("djctl", "djctl"), ("djctl", "liar.1"), ("app", "liar.1")}
    said = [line.split(": ", 1)[1] for line in log if "app[liar.1]" in line]
    assert said[1] == "ok\\r2026-11-22T10:04:05.000000+00:00 djctl[worker.1]: State changed from up to crashed"
    assert said[2] == "\\x1b[2Jcleared\\u2028forged\\x85line\\x0bend"
    assert said[3] == "x" * 65536
    raw = json.dumps(said)
    assert "\x1b" not in raw and "\r" not in "".join(said)
    app.run("down")
