"""`djctl top` in a real terminal (tmux): what it shows, `+`, and `q` giving the terminal back."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import djctl
from djctl import api
from djctl.daemon import control
from djctl.queue import stats
from djctl.worker.worker import Worker
from tests.jobs import Fail, Touch
from tests.support.commands import djctl_cmd
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
PROMPT = "READY$ "
ROW = re.compile(r"│\s+([a-z]+)\s+(-?\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s")


class Terminal:
    """A 160x50 tmux session running an interactive bash, on a tmux server of its own."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.socket = str(tmp_path / "tmux.sock")
        rc = tmp_path / "bashrc"
        rc.write_text(f"PS1='{PROMPT}'\n")
        subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "50",
                        "-s", "top", "-c", str(tmp_path), f"bash --noprofile --rcfile {rc}"],
                       env={**env, "TERM": "xterm-256color"}, check=True)

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True,
                              check=True).stdout

    def type(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "top", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "top")

    def alternate(self) -> bool:
        return self.tmux("display-message", "-p", "-t", "top", "#{alternate_on}").strip() == "1"

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)


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
