"""``djctl.progress`` from a running job: shown by ``djctl ps`` and the console within 2 s,
with no database write (real supervisor, real worker, real executor child)."""

from __future__ import annotations

import json
import time

import pytest

import djctl
from djctl import config
from djctl.tui.model import JobFilter
from djctl.tui.sources import DatabaseSource
from tests.jobs import Progressing
from tests.support.app import heavy, running_app
from tests.support.rows import count
from tests.support.waiting import wait_for


@pytest.fixture
def app(db_kind, request, tmp_path):
    heavy(db_kind)
    yield from running_app(request, tmp_path)


def test_progress_shows_in_ps_and_the_console_within_2_s(app, tmp_path):
    out, gate = tmp_path / "out", tmp_path / "gate"
    app.run("up")
    app.wait_up(1)
    job_id = djctl.enqueue(Progressing(str(out), str(gate)))
    try:
        wait_for(lambda: out.exists() and "reported" in out.read_text(), timeout=30, message="the job reporting")
        reported = time.monotonic()
        line = wait_for(lambda: next((ln for ln in app.run("ps").stdout.splitlines()
                                      if ln.startswith("worker.1:") and "42%" in ln), None),
                        timeout=2.0, message="djctl ps showing the progress")
        assert line.endswith(f"  Progressing (id={job_id}) 42% resizing 3 of 7"), line
        worker = next(p for p in json.loads(app.run("ps", "--json").stdout) if p["name"] == "worker.1")
        assert worker["progress"] == {"job_id": job_id, "class": "Progressing", "fraction": 0.42,
                                      "message": "resizing 3 of 7"}

        source = DatabaseSource(config.current().replace(state_dir=app.state))
        row = wait_for(lambda: next((p for p in source.snapshot(JobFilter()).processes
                                     if p.name == "worker.1" and p.progress), None),
                       timeout=max(0.1, 2.0 - (time.monotonic() - reported)), message="the console's progress")
        assert row.progress == "42% resizing 3 of 7" and row.job == f"Progressing (id={job_id})"

        # Another host's console reads it from djctl_processes, written with the heartbeat.
        elsewhere = DatabaseSource(config.current().replace(state_dir=tmp_path / "elsewhere"), host="elsewhere")
        remote = wait_for(lambda: next((p for p in elsewhere.snapshot(JobFilter()).processes
                                        if p.name == "worker.1" and p.progress), None),
                          timeout=10, message="the progress in djctl_processes")
        assert not remote.local and remote.progress == "42% resizing 3 of 7"
        assert f"Progressing (id={job_id}) 42% resizing 3 of 7" in app.run("ps", "--all-hosts").stdout
    finally:
        gate.write_text("")
    wait_for(lambda: count(app.db_url) == 0, timeout=30, message="the job done")
    wait_for(lambda: "42%" not in app.run("ps").stdout, message="the progress gone with its job")
    app.run("down")
