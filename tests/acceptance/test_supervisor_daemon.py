"""The supervisor as a user drives it: up, scale, ps, down, SIGKILLs, bad input — with real
processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time

import psutil
import pytest

import djctl
from tests.jobs import Gate, Touch
from tests.support.app import App, heavy, running_app
from tests.support.rows import count, locked, registered
from tests.support.waiting import wait_for

# The lighter acceptance tests run on MySQL too; the others on SQLite and PostgreSQL.
ALSO_ON_MYSQL = {"test_up_scale_down_up"}


@pytest.fixture
def app(db_kind, request, tmp_path):
    if request.node.originalname not in ALSO_ON_MYSQL:
        heavy(db_kind)
    yield from running_app(request, tmp_path)


def test_up_scale_down_up(app, tmp_path):
    """Acceptance 1."""
    out = app.run("up").stdout
    sup = app.supervisor_pid()
    assert out.strip() == f"Starting djctl supervisor... done (pid {sup}), running worker=1"
    assert list(app.wait_up(1)) == ["worker.1"]
    # Its process title, set as the worker starts.
    wait_for(lambda: [p.cmdline()[0] for p in app.children()] == ["djctl worker.1"], message="the worker's title")
    assert stat.S_IMODE(os.stat(app.state).st_mode) == 0o700
    mask = os.umask(0o022)
    os.umask(mask)  # the daemon's files are owner-only, but its processes get the user's umask
    assert f"Umask:\t{mask:04o}" in open(f"/proc/{app.children()[0].pid}/status").read()
    for name in ("djctl.pid", "djctl.log", "formation.json", "control.sock"):
        assert stat.S_IMODE(os.stat(app.state / name).st_mode) == 0o600, name

    again = app.run("up")
    assert again.stdout.strip() == f"djctl is already running (pid {sup})"

    out = app.cli("scale", "worker=3").stdout
    assert out.strip() == "Scaling worker processes... done, now running worker at 3."
    assert sorted(app.wait_up(3)) == ["worker.1", "worker.2", "worker.3"]
    assert len(app.children()) == 3

    out = app.cli("scale", "worker-1").stdout
    assert out.strip() == "Scaling worker processes... done, now running worker at 2."
    wait_for(lambda: len(app.children()) == 2, message="worker.3 stopped")
    assert sorted(app.wait_up(2)) == ["worker.1", "worker.2"]
    assert app.cli("scale").stdout.strip() == "worker=2"

    # Jobs in flight when we go down: none may stay locked.
    path = tmp_path / "runs.txt"
    djctl.enqueue_many([Touch(str(path), str(i), seconds=0.3) for i in range(6)])
    wait_for(lambda: locked(app.db_url), message="jobs claimed")
    out = app.cli("down").stdout
    # A slow stop also names the jobs being finished in between (issue 12, point 12).
    assert out.startswith(f"Stopping djctl supervisor (pid {sup})... ") and out.endswith("done\n"), out
    assert app.ours() == []
    assert not psutil.pid_exists(sup) or psutil.Process(sup).status() == psutil.STATUS_ZOMBIE
    assert locked(app.db_url) == [], "\n".join(app.log())
    assert registered(app.db_url) == []
    assert not (app.state / "control.sock").exists()
    assert app.cli("down").stdout.strip() == "djctl is not running."

    out = app.run("up").stdout
    assert out.strip().endswith("running worker=2")
    assert sorted(app.wait_up(2)) == ["worker.1", "worker.2"]
    wait_for(lambda: count(app.db_url) == 0, 30, message="the jobs left over to be worked off")
    app.cli("down")
    assert app.ours() == []


def test_sigkilled_supervisor_leaves_no_orphans_and_next_up_recovers(app, tmp_path):
    """Acceptance 4."""
    # Two types on two queues, so that we know which worker holds which job.
    (app.dir / "Procfile").write_text("worker: djctl work --queues short\nlong: djctl work --queues long\n")
    app.run("up", "--formation", "worker=2 long=1")
    workers = app.wait_up(2)
    long_pid = app.wait_up(1, "long")["long.1"]
    sup = app.supervisor_pid()
    path = tmp_path / "runs.txt"
    long_ = djctl.enqueue(Touch(str(path), "long", seconds=120), queue="long")
    # The short job writes "start <pid>", then "end" 1.5 s later (its gate never opens).
    short = djctl.enqueue(Gate(str(path), str(tmp_path / "never"), limit=1.5), queue="short")
    wait_for(lambda: len(locked(app.db_url)) == 2, message="both jobs claimed")
    # Started, not just claimed: a claimed job not yet started is given back on SIGTERM.
    wait_for(lambda: path.exists() and path.read_text().startswith("start"), message="the short job to start")
    holder = dict(locked(app.db_url))[long_]
    assert holder.endswith(f" pid:{long_pid}")

    # The supervisor dies, and with it the worker stuck in the long job (say, the OOM killer).
    os.kill(sup, signal.SIGKILL)
    os.kill(long_pid, signal.SIGKILL)
    wait_for(lambda: not any(_running(p) for p in workers.values()), 15,
             message="the orphaned workers to exit on their own")
    wait_for(lambda: app.ours() == [], 10, message="no process of ours left")
    assert [ln.split()[0] for ln in path.read_text().splitlines()] == ["start", "end"]  # finished first
    # The dead worker's claim stays, unless the short worker's maintenance pass (it runs
    # while that worker finishes its job) already gave it back, as any worker of this host may.
    still_held = locked(app.db_url) == [(long_, holder)]
    assert still_held or locked(app.db_url) == []

    out = app.run("up").stdout
    assert out.strip().endswith("running worker=2 long=1")
    app.wait_up(2)
    app.wait_up(1, "long")
    if still_held:  # the new supervisor released it before starting anything
        assert app.log_has(rf"djctl\[djctl\]: Released 1 job held by {holder} ")
    wait_for(lambda: [j for j, h in locked(app.db_url) if h != holder] == [long_], 15,
             message="the long job to run again")
    assert short not in dict(locked(app.db_url))
    app.cli("down")


def _keep_reading(listener: socket.socket, received: list[str]) -> None:
    """Collect every datagram until the socket is idle for its timeout or closed."""
    with contextlib.suppress(OSError):
        while True:
            received.append(listener.recv(4096).decode())


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_bad_input_is_one_line_and_changes_nothing(app, tmp_path):
    """Acceptance 8."""
    def fails(*args, code):
        result = (app.run if args[0] == "up" else app.cli)(*args, ok=False)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("djctl: "), result.stderr
        return lines[0]

    app.run("up", "--formation", "worker=2")
    assert json.loads(app.cli("ps", "--json").stdout) == app.ps()
    formation = (app.state / "formation.json").read_text()
    assert "not a whole number" in fails("scale", "worker=abc", code=2)
    assert "cannot be negative" in fails("scale", "worker=-1", code=2)
    assert "unknown process type 'web'; known types: worker" in fails("scale", "web=1", code=2)
    assert "unknown process type" in fails("ps", "web", code=2)
    assert "no process 'worker.9' to restart" in fails("restart", "-d", "worker.9", code=2)
    assert "change it with djctl scale" in fails("up", "--formation", "worker=5", code=1)
    assert (app.state / "formation.json").read_text() == formation
    assert len(app.wait_up(2)) == 2

    # A control socket that is not ours is refused.
    sock = app.state / "control.sock"
    os.chown(sock, 65534, 65534, follow_symlinks=False)
    assert "owned by uid 65534, not you; refusing" in fails("ps", code=1)
    os.chown(sock, os.getuid(), os.getgid(), follow_symlinks=False)
    app.cli("down")

    (app.dir / "Procfile").write_text("worker djctl work\n")
    assert "Procfile line 1: expected 'name: command'" in fails("up", code=1)
    (app.dir / "Procfile").unlink()

    (app.state / "formation.json").write_text("{not json")
    assert "state file" in fails("up", code=1) and "corrupt" in fails("scale", "worker=1", code=1)
    assert (app.state / "formation.json").read_text() == "{not json"
    (app.state / "formation.json").write_text(formation)

    (app.state / "djctl.pid").write_text("garbage\n")
    assert "pid file" in fails("up", code=1)
    assert (app.state / "djctl.pid").read_text() == "garbage\n"
    assert app.ours() == []
    (app.state / "djctl.pid").unlink()

    assert "give -p TYPE or -d NAME" in fails("restart", "-p", "worker", "-d", "worker.1", code=2)
    bad = App(app.dir, app.env, app.db_url, DJ_RESTART_BACKOFF="soon")
    result = bad.run("up", ok=False)
    assert result.returncode == 2 and "DJ_RESTART_BACKOFF" in result.stderr
    assert app.ours() == []
    assert locked(app.db_url) == []


def test_a_crash_looping_type_shows_crashed_and_backs_off_cheaply(app):
    """Acceptance 6."""
    (app.dir / "Procfile").write_text("worker: djctl work\ncrash: sh -c 'exit 1'\n")
    app.env.update(DJ_RESTART_BACKOFF="0.2", DJ_RESTART_BACKOFF_MAX="1")
    out = app.run("up", "--formation", "worker=0 crash=1", ok=False)
    assert out.returncode == 1
    assert out.stderr.startswith("crash.1 did not stay up; its last lines:\n  (it wrote nothing)\n")
    sup = psutil.Process(app.supervisor_pid())
    starts = lambda: len(app.log_has(r"djctl\[crash\.1\]: Starting process"))  # noqa: E731
    wait_for(lambda: starts() >= 4, 20, message="a few restarts, backing off")
    ps = wait_for(lambda: (out := app.cli("ps", "crash").stdout).startswith(
        "=== crash: sh -c 'exit 1' (1)\ncrash.1: crashed ") and out, message="ps to show crashed")
    assert ps.endswith(" ago)\n")
    cpu = sum(sup.cpu_times()[:2])
    began, before = time.monotonic(), starts()
    wait_for(lambda: starts() >= before + 3, 20, message="three more restarts at the slowest backoff")
    elapsed = time.monotonic() - began
    used = sum(sup.cpu_times()[:2]) - cpu
    # Backing off at 1 s, three restarts take over 2 s; a hot loop would make hundreds.
    assert elapsed > 2.0
    assert used < 0.5 * elapsed, (used, elapsed)
    assert app.log_has(r"djctl\[crash\.1\]: State changed from starting to crashed$")
    assert app.log_has(r"djctl\[crash\.1\]: Process exited with status 1$")
    app.cli("down")
    assert app.ours() == []


def test_foreground_speaks_sd_notify_and_sets_heroku_variables(app, db_kind, tmp_path):
    """--foreground (systemd, containers): no daemon, READY/STATUS/STOPPING over NOTIFY_SOCKET,
    Heroku's variables in each process's environment, its stderr in the log, restart -d one process."""
    if db_kind != "sqlite":
        pytest.skip("independent of the database")
    (app.dir / "Procfile").write_text(
        "worker: djctl work\n"
        "env: sh -c 'echo DYNO=$DYNO PORT=$PORT NOTIFY=${NOTIFY_SOCKET:-none} >&2; exec sleep 600'\n")
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(30)
    proc = app.popen("up", "--foreground", "--formation", "worker=1 env=1",
                     env={**app.env, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"},
                     stdout=subprocess.PIPE, text=True)
    try:
        received: list[str] = []
        while "READY=1\nSTATUS=worker=1 env=1 (2 up)" not in received:
            received.append(listener.recv(4096).decode())
        assert all(m == "WATCHDOG=1" for m in received[:-1]), received  # nothing else before READY
        # The watchdog pings at half of WatchdogSec (0.4 s here) while the supervisor runs.
        while received.count("WATCHDOG=1") < 2:
            received.append(listener.recv(4096).decode())
        assert app.supervisor_pid() == proc.pid  # it did not fork away
        # From now on, read the socket as systemd does: all the time.
        threading.Thread(target=_keep_reading, args=(listener, received), daemon=True).start()
        first = wait_for(lambda: app.log_has(r"app\[env\.1\]: DYNO="), message="env.1's line")
        assert first[0].endswith("app[env.1]: DYNO=env.1 PORT=5100 NOTIFY=none")

        old = app.up_pids()["worker.1"]
        assert app.cli("restart", "-d", "worker.1").stdout.strip() == "Restarting worker.1 process... done"
        assert app.up_pids()["worker.1"] != old

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        wait_for(lambda: "STOPPING=1" in received, message="STOPPING=1")
        out = proc.stdout.read()
        assert f"Starting djctl supervisor... done (pid {proc.pid}), running worker=1 env=1" in out
        assert re.search(r"^\S+ app\[env\.1\]: DYNO=env\.1 ", out, re.M)  # the log, echoed
        assert app.ours() == []
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()
