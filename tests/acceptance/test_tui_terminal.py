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
from tests.jobs import Fail, Forger, Touch
from tests.support.app import running_app
from tests.support.commands import djctl_cmd
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
PROMPT = "READY$ "
ROW = re.compile(r"│\s+([a-z]+)\s+(-?\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s")
DONE_RATE = re.compile(r"done (\d+\.\d)/s")


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


def test_job_output_poses_as_nothing_in_top_and_counts_no_completion(db_kind, request, tmp_path):
    """Issue 14, acceptance 9: a job prints fake COMPLETED reports, ANSI escapes and the
    supervisor's own words after \\r, \\x1e, \\u2028, \\x85 and \\v. In ``djctl top``
    (tmux) none of it shows as a line of another source, nothing is erased, and the
    throughput counts the three real completions only."""
    if db_kind == "mysql":
        pytest.skip("the console is accepted on SQLite and PostgreSQL")
    app = next(running_app(request, tmp_path, procfile=f"worker: {sys.executable} -m djctl work\n",
                           DJ_APP="tests.jobs"))
    term = Terminal(tmp_path, app.env)
    try:
        app.run("up", "--formation", "worker=1")
        app.wait_up(1)
        wait_for(lambda: term.screen().rstrip().endswith(PROMPT.rstrip()), message="the shell prompt")
        term.type(" ".join(djctl_cmd("top", "--refresh", "0.2")), "Enter")
        wait_for(lambda: DONE_RATE.search(term.screen()) and "worker.1" in term.screen(), timeout=30,
                 message="the console's throughput and processes")
        touched = tmp_path / "touched"
        djctl.enqueue(Forger(fakes=100))
        for key in ("a", "b"):
            djctl.enqueue(Touch(str(touched), key))

        rates: list[float] = []

        def rate_back_to_zero() -> bool:
            rates.extend(float(m[1]) for m in DONE_RATE.finditer(term.screen()))
            return any(rates) and rates[-1] == 0.0
        wait_for(rate_back_to_zero, timeout=60, interval=0.2, message=f"the done rate to rise and fall: {rates}")
        assert 0.0 < max(rates) <= 0.3, f"3 jobs completed; the console counted up to {max(rates) * 10:g}"

        screen = term.screen()  # the dashboard's log panel: one row per line, cut at its edge
        rows = screen.splitlines()
        assert not [r for r in rows if re.search(r"\d\d:\d\d:\d\d worker\.7\b", r)], screen
        assert not [r for r in rows if re.search(r"\d\d:\d\d:\d\d \S+ State changed from up to FORGED", r)], screen
        for n, shown in enumerate(("\\r", "\\x1e", "\\u2028", "\\x85", "\\x0b")):
            line = rf"\d\d:\d\d:\d\d worker\.1 job says{re.escape(shown)}2026.*FORGED{n}"
            assert [r for r in rows if re.search(line, r)], screen
        assert "worker.1 \\x1b[1A\\x1b[2K\\x1b[2Jerased" in screen

        # A second window of the same terminal, while the console runs on in the first.
        term.tmux("new-window", "-t", "top", "-c", str(tmp_path), f"bash --noprofile --rcfile {tmp_path / 'bashrc'}")
        wait_for(lambda: term.screen().rstrip().endswith(PROMPT.rstrip()), message="the second window's prompt")
        # The same lines through `djctl logs` and `djctl logs -t`, printed to the terminal itself.
        for follow in ((), ("-t",)):
            term.type("clear", "Enter")
            term.type(" ".join(djctl_cmd("logs", *follow, "-p", "worker", "-n", "14")), "Enter")
            wait_for(lambda: "FORGED4" in term.screen(), timeout=30, message=f"the forged lines in logs {follow}")
            _shows_forgeries_as_worker_1s_own(term.tmux("capture-pane", "-p", "-J", "-t", "top"))
            if follow:
                term.type("C-c")
            wait_for(lambda: term.screen().rstrip().endswith(PROMPT.rstrip()), message="the prompt back")
    finally:
        term.close()
        app.run("down", ok=False)
        app.kill_everything()


def _shows_forgeries_as_worker_1s_own(screen: str) -> None:
    """Each forged line is one line of worker.1's, its separators and escapes visible;
    nothing on screen was erased (the command line is still there)."""
    lines = screen.splitlines()
    assert any("djctl logs" in line or "-m djctl logs" in line for line in lines), screen
    assert not [line for line in lines if re.match(r"\S+ djctl\[worker\.7\]", line)], screen
    for n, shown in enumerate(("\\r", "\\x1e", "\\u2028", "\\x85", "\\x0b")):
        mine = [line for line in lines if f"FORGED{n}" in line]
        assert len(mine) == 1 and re.match(rf"\S+ app\[worker\.1\]: job says{re.escape(shown)}2026", mine[0]), screen
    assert any(line.endswith("app[worker.1]: \\x1b[1A\\x1b[2K\\x1b[2Jerased") for line in lines), screen
