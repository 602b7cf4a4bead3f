"""`djctl top` in a real terminal (tmux): what it shows, `+`, and `q` giving the terminal back."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import timedelta

import pytest

import djctl
from djctl import api
from djctl.daemon import control
from djctl.queue import stats
from djctl.worker.worker import Worker
from tests.jobs import Fail, Touch
from tests.support.commands import djctl_cmd
from tests.support.terminal import PROMPT, Terminal
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
ROW = re.compile(r"│\s+([a-z]+)\s+(-?\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s")


def shown_depth(screen: str) -> set[tuple]:
    """The Queues panel's rows as (queue, priority, ready, scheduled, running, failed)."""
    return {(m[1], *map(int, m.groups()[1:])) for m in ROW.finditer(screen)}


def database_depth() -> set[tuple]:
    with api.engine().connect().execution_options(sqlite_read=True) as conn:
        rows = stats.queue_depth(conn, api.utc_naive(api.now()))
    return {(d.queue, d.priority, d.ready, d.scheduled, d.running, d.failed) for d in rows}


def test_top_in_a_real_terminal(db_kind, db_url, djctl_env, tmp_path):
    if db_kind == "mysql":
        pytest.skip("the console is accepted on SQLite and PostgreSQL")
    for i in range(7):
        djctl.enqueue(Touch(str(tmp_path / "t"), str(i)), priority=i % 2)
    for i in range(3):
        djctl.enqueue(Touch(str(tmp_path / "t"), f"m{i}"), queue="mail", priority=10,
                      run_at=api.now() + timedelta(hours=1))
    djctl.enqueue(Fail("disk full"), queue="mail", priority=10)
    assert Worker(max_attempts=1, queues=["mail"], log=lambda line: None).work_off(num=10) == (0, 1)
    # The supervised workers serve a queue nobody uses, so the counts hold still while we compare.
    (tmp_path / "Procfile").write_text(f"worker: {sys.executable} -m djctl work --queues elsewhere\n")
    up = subprocess.run(djctl_cmd("up"), env=djctl_env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    client = control.Client(tmp_path / ".djctl")
    term = Terminal(tmp_path, djctl_env)
    try:
        wait_for(lambda: term.screen().rstrip().endswith(PROMPT.rstrip()), message="the shell prompt")
        term.type(" ".join(djctl_cmd("top", "--refresh", "0.2")), "Enter")
        expected = database_depth()
        assert len(expected) == 3
        wait_for(lambda: shown_depth(term.screen()) == expected, timeout=30,
                 message=f"the console to show {expected}, it shows {shown_depth(term.screen())}")
        assert term.alternate()
        wait_for(lambda: "worker.1" in term.screen() and " up " in term.screen(), timeout=30,
                 message="worker.1 up in the processes panel")

        term.type("+")
        wait_for(lambda: client.request("ps")["formation"] == {"worker": 2}, timeout=30,
                 message="the formation at worker=2")
        wait_for(lambda: "worker.2" in term.screen(), timeout=30, message="worker.2 in the processes panel")

        term.type("q")
        wait_for(lambda: not term.alternate(), message="the alternate screen left")
        wait_for(lambda: term.screen().rstrip().endswith(PROMPT.rstrip()), message="the prompt back")
        term.type("echo back-$((40+2))", "Enter")  # input echoes and lines end: the tty is sane again
        wait_for(lambda: "\nback-42\n" in term.screen(), message="the shell to answer")

        # Ctrl+C quits too, as it ends every other command: nothing typed after it reaches the console.
        term.type("clear", "Enter")
        term.type(" ".join(djctl_cmd("top", "--refresh", "0.2")), "Enter")
        wait_for(lambda: term.alternate() and "worker.2" in term.screen(), timeout=30, message="the console again")
        term.type("C-c")
        wait_for(lambda: not term.alternate(), message="Ctrl+C to leave the console")
        term.type("echo rc=$?", "Enter")
        wait_for(lambda: "\nrc=0\n" in term.screen(), message="the shell to answer after Ctrl+C")
    finally:
        term.close()
        subprocess.run(djctl_cmd("down"), env=djctl_env, cwd=tmp_path, capture_output=True, timeout=60)


def _rows(url: str) -> list[tuple]:
    with api.engine(url).connect().execution_options(sqlite_read=True) as conn:
        return [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM delayed_jobs ORDER BY id")]


# Each action key, and what the line refusing it names.
ACTION_KEYS = {"+": "Scale up", "-": "Scale down", "r": "Retry", "R": "Retry all", "d": "Delete", "D": "Delete all",
               "c": "Clear queue"}


def test_top_read_only_shows_no_action_key_and_changes_nothing(db_kind, db_url, djctl_env, tmp_path):
    if db_kind == "mysql":
        pytest.skip("the console is accepted on SQLite and PostgreSQL")
    djctl.enqueue(Touch(str(tmp_path / "t"), "waiting"), queue="mail", run_at=api.now() + timedelta(hours=1))
    djctl.enqueue(Fail("disk full"))
    assert Worker(max_attempts=1, log=lambda line: None).work_off(num=10) == (0, 1)
    (tmp_path / "Procfile").write_text(f"worker: {sys.executable} -m djctl work --queues elsewhere\n")
    up = subprocess.run(djctl_cmd("up"), env=djctl_env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    client = control.Client(tmp_path / ".djctl")
    before = _rows(db_url)
    term = Terminal(tmp_path, djctl_env)
    try:
        wait_for(lambda: term.screen().rstrip().endswith(PROMPT.rstrip()), message="the shell prompt")
        term.type(" ".join(djctl_cmd("top", "--refresh", "0.2", "--read-only")), "Enter")
        wait_for(lambda: "Failed jobs (1)" in term.screen() and "worker.1" in term.screen(), timeout=30,
                 message="the console with its failed job and worker.1")
        footer = term.screen().rstrip().splitlines()[-1]
        assert "q Quit" in footer and "? Help" in footer and "/ Filter" in footer, footer
        for label in ("Scale", "Retry", "Delete", "Clear"):
            assert label not in footer, footer
        for key, words in ACTION_KEYS.items():
            term.type(key)
            wait_for(lambda words=words: f"{words}: not allowed in a read-only console" in term.screen(),
                     message=f"{key!r} refused on screen")
            assert "Cancel" not in term.screen(), f"{key!r} opened a confirmation"
        assert _rows(db_url) == before
        assert client.request("ps")["formation"] == {"worker": 1}
        term.type("q")
        wait_for(lambda: not term.alternate(), message="the alternate screen left")
    finally:
        term.close()
        subprocess.run(djctl_cmd("down"), env=djctl_env, cwd=tmp_path, capture_output=True, timeout=60)
    assert _rows(db_url) == before
