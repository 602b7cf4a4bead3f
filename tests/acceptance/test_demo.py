"""The README's first command, `djctl demo`, on the embedded SQLite default. Without a
terminal it watches the queue drain instead of opening the console (the console itself
is tested in a real terminal by test_tui_terminal.py)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import psutil

from tests.support.commands import ROOT, djctl_cmd
from tests.support.rows import count


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
    try:
        r = subprocess.run(djctl_cmd("demo", "--jobs", "40"), cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "Enqueued 40 sample jobs (some slow, some scheduled for later, some failing)."
        assert re.fullmatch(r"Starting djctl supervisor\.\.\. done \(pid \d+\), running worker=2", lines[1])
        assert lines[2].startswith("No terminal here")
        assert re.fullmatch(r"ready\s+0\s+running\s+0\s+in the table\s+\d+", lines[-2]), lines[-2]
        assert re.fullmatch(r"Stopping djctl supervisor \(pid \d+\)\.\.\. done", lines[-1])
        # What is left: the jobs scheduled for later and the failed ones waiting for their retry.
        url = f"sqlite:///{tmp_path / 'delayed_jobs.sqlite3'}"
        left = count(url)
        assert 0 < left < 40
        assert count(url, "locked_at IS NULL AND (run_at > CURRENT_TIMESTAMP OR attempts > 0)") == left
        # Every other job ran and was deleted: the log says so once for each.
        assert (tmp_path / ".djctl" / "djctl.log").read_text().count(") COMPLETED") == 40 - left
        assert _in(tmp_path) == []
    finally:
        for p in _in(tmp_path):
            p.kill()
