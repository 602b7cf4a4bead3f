"""The README's first command, `djctl demo`, on the embedded SQLite default. Without a
terminal it watches the queue drain instead of opening the console (the console itself
is tested in a real terminal by test_tui_terminal.py)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import psutil

from tests.support.commands import ROOT, djctl_cmd


def _in(directory: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.status() != psutil.STATUS_ZOMBIE and p.cwd() == str(directory):
                found.append(p)
        except psutil.Error:
            pass
    return found


def test_demo_runs_the_sample_jobs_under_a_supervisor_and_stops_everything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJ_")}  # the defaults, as on a new machine
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # The application's own database: the demo must leave it alone (issue 12, point 13).
    app_db = tmp_path / "app.sqlite3"
    env["DJ_DATABASE_URL"] = f"sqlite:///{app_db}"
    try:
        r = subprocess.run(djctl_cmd("demo", "--jobs", "40"), cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        demo_db = tmp_path / ".djctl" / "demo" / "demo.sqlite3"
        assert lines[0] == (f"Enqueued 40 sample jobs into sqlite:///{demo_db} "
                            "(some slow, some scheduled for later, some failing).")
        assert re.fullmatch(r"Starting djctl supervisor\.\.\. done \(pid \d+\), running worker=2", lines[1])
        assert lines[2].startswith("No terminal here")
        watched = [line for line in lines if line.startswith("ready ")]
        assert re.fullmatch(r"ready\s+0\s+running\s+0\s+in the table\s+\d+", watched[-1]), watched[-1]
        left = int(watched[-1].split()[-1])
        assert 0 < left < 40, "the scheduled and failed jobs are left until the end"
        # down may name the jobs being finished between its first line and "done".
        assert any(re.fullmatch(r"Stopping djctl supervisor \(pid \d+\)\.\.\. (done)?", line) for line in lines)
        assert lines[-2].endswith("done")
        assert lines[-1] == f"Removed the demo's database {demo_db}."
        assert not demo_db.exists()
        assert not app_db.exists(), "the application's database was not touched"
        # Nothing of the demo stays: its log and saved formation went with its database.
        assert not (tmp_path / ".djctl" / "demo").exists()
        assert stat.S_IMODE(os.stat(tmp_path / ".djctl").st_mode) == 0o700
        assert _in(tmp_path) == []
    finally:
        for p in _in(tmp_path):
            p.kill()
