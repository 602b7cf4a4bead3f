"""`djctl top` on a real `djctl up`, in a real 80x24 terminal (tmux), and the process
that runs a job as ps and the console see it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

import djctl
from djctl import config
from djctl.tui.model import JobFilter, ProcessRow
from djctl.tui.sources import DatabaseSource
from tests.acceptance.console_jobs import Spin
from tests.jobs import Fail
from tests.support.commands import djctl_cmd
from tests.support.waiting import wait_for

PROMPT = "READY$ "
APP = "tests.jobs,tests.acceptance"
REASON = ("could not read /srv/imports/2026-11-22/customers-of-the-north-region.csv because "
          "the importer user has no permission on /srv/imports")


class Terminal:
    """A tmux session of ``size`` running an interactive bash, on a tmux server of its own."""

    def __init__(self, tmp_path: Path, env: dict[str, str], size: tuple[int, int] = (80, 24)) -> None:
        self.socket = str(tmp_path / "tmux.sock")
        rc = tmp_path / "bashrc"
        rc.write_text(f"PS1='{PROMPT}'\n")
        subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", "new-session", "-d", "-x", str(size[0]),
                        "-y", str(size[1]), "-s", "top", "-c", str(tmp_path), f"bash --noprofile --rcfile {rc}"],
                       env={**env, "TERM": "xterm-256color"}, check=True)

    def type(self, *keys: str) -> None:
        subprocess.run(["tmux", "-S", self.socket, "send-keys", "-t", "top", *keys], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "-S", self.socket, "capture-pane", "-p", "-t", "top"], capture_output=True,
                              text=True, check=True).stdout

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True)


def until_shown(term: Terminal, predicate, message: str, timeout: float = 30) -> None:
    """Wait for ``predicate(screen)``; on timeout, fail showing the screen as it is then."""
    try:
        wait_for(lambda: predicate(term.screen()), timeout=timeout, interval=0.1, message=message)
    except AssertionError as e:
        raise AssertionError(f"{e}; the terminal shows:\n{term.screen()}") from None


def unwrapped(screen: str) -> str:
    """The screen's text with panel borders removed and every row joined by one space,
    so that a wrapped line reads as the sentence it is."""
    rows = [re.sub(r"^[│▊ ]+|[│▎ ▁▂▃▄▅▆▇█]+$", "", row) for row in screen.splitlines()]
    return " ".join(r for r in rows if r)


@pytest.fixture
def supervised(db_kind, djctl_env, tmp_path):
    """`djctl up` with one worker, on SQLite and PostgreSQL; `djctl down` afterwards."""
    if db_kind == "mysql":
        pytest.skip("the console is accepted on SQLite and PostgreSQL")
    env = dict(djctl_env, DJ_APP=APP, DJ_MAX_ATTEMPTS="1")
    (tmp_path / "Procfile").write_text(f"worker: {sys.executable} -m djctl work\n")
    up = subprocess.run(djctl_cmd("up"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    try:
        yield env
    finally:
        subprocess.run(djctl_cmd("down"), env=env, cwd=tmp_path, capture_output=True, timeout=60)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_failure_reason_reads_in_full_at_80x24(supervised, tmp_path):
    djctl.enqueue(Fail(REASON))
    term = Terminal(tmp_path, supervised)
    try:
        wait_for(lambda: term.screen().rstrip().endswith(PROMPT.rstrip()), message="the shell prompt")
        term.type(" ".join(djctl_cmd("top", "--refresh", "0.2")), "Enter")
        until_shown(term, lambda s: "Failed jobs (1)" in s and "FAILED" in s, "the failed job and its log line",
                    timeout=60)
        dashboard = term.screen()
        assert "supervisor running" in dashboard and "worker=1" in dashboard
        assert "[Worker(" not in dashboard, "the log repeats the worker's name"
        term.type("l")
        until_shown(term, lambda s: REASON in unwrapped(s), "the whole reason in the full-screen log")
        assert all(len(row) <= 80 for row in term.screen().splitlines())
        term.type("w")  # unwrapped, the line is cut at the edge and its end is off screen
        until_shown(term, lambda s: "w: wrap" in s and REASON not in unwrapped(s), "the log unwrapped")
        term.type("w")
        until_shown(term, lambda s: REASON in unwrapped(s), "the log wrapped again")
        term.type("Escape")  # alone: Escape then q at once reads as alt+q
        until_shown(term, lambda s: "Failed jobs (1)" in s, "the dashboard again")
        term.type("q")
        until_shown(term, lambda s: s.rstrip().endswith(PROMPT.rstrip()), "the prompt back")
    finally:
        term.close()


def test_the_console_measures_the_process_running_the_job(supervised, tmp_path):
    stop = tmp_path / "stop"
    job_id = djctl.enqueue(Spin(str(stop)))
    source = DatabaseSource(config.current())
    title = f"djctl worker.1 job {job_id} tests.acceptance.console_jobs:Spin"

    def worker() -> ProcessRow | None:
        rows = [p for p in source.snapshot(JobFilter()).processes if p.name == "worker.1" and p.job]
        return rows[0] if rows else None

    try:
        row = wait_for(worker, timeout=60, interval=0.5, message="worker.1 running the job in the console")
        assert f"(id={job_id})" in row.job
        assert _args(row.pid) == "djctl worker.1"
        executor = wait_for(lambda: _children_titled(row.pid, title), timeout=30, interval=0.2,
                            message=f"a child of worker.1 titled {title!r} in ps")
        # What the job gets depends on the machine (2 busy cores may give it a quarter of
        # one): the console must show what the executor used, not what the worker used.
        job, alone = psutil.Process(executor), psutil.Process(row.pid)
        job.cpu_percent(None)
        alone.cpu_percent(None)

        def shows_the_job() -> tuple | None:
            shown = worker()
            used, own = job.cpu_percent(None), alone.cpu_percent(None)
            if shown is None or shown.cpu is None or used < 10:
                return None
            return (shown.cpu, used, own) if abs(shown.cpu - used) <= 0.3 * used and own < used / 2 else None
        shown, used, own = wait_for(shows_the_job, timeout=60, interval=1.0,
                                    message="the console's CPU for worker.1 to be its executor's")
        assert shown > 2 * own
    finally:
        stop.touch()


def _args(pid: int) -> str:
    return subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True,
                          check=True).stdout.strip()


def _children_titled(pid: int, title: str) -> int | None:
    """The pid of ``pid``'s child whose command line (ps -o args) is ``title``."""
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    for line in out.splitlines():
        child, _, args = line.strip().partition(" ")
        if args.strip() == title:
            return int(child)
    return None


def test_processes_are_listed_as_ps_lists_them(db_kind, djctl_env, tmp_path):
    if db_kind == "mysql":
        pytest.skip("the console is accepted on SQLite and PostgreSQL")
    # Procfile order, not alphabetical: ps lists worker before alpha, and so must the console.
    idle = f"{sys.executable} -m djctl work --queues nothing"
    (tmp_path / "Procfile").write_text(f"worker: {idle}\nalpha: {idle}\n")
    up = subprocess.run(djctl_cmd("up", "--formation", "worker=2", "--formation", "alpha=1"), env=djctl_env,
                        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    try:
        def ps_order() -> list[str]:
            out = subprocess.run(djctl_cmd("ps"), env=djctl_env, cwd=tmp_path, capture_output=True, text=True,
                                 timeout=60).stdout
            return [line.split(":")[0] for line in out.splitlines() if line and not line.startswith("===")]
        order = wait_for(lambda: len(o := ps_order()) == 3 and o, timeout=60, message="three processes")
        assert order == ["worker.1", "worker.2", "alpha.1"]
        shown = [p.name for p in DatabaseSource(config.current()).snapshot(JobFilter()).processes]
        assert shown == order
    finally:
        subprocess.run(djctl_cmd("down"), env=djctl_env, cwd=tmp_path, capture_output=True, timeout=60)


def test_ps_and_ps_all_hosts_show_the_same_start(db_kind, djctl_env, tmp_path):
    (tmp_path / "Procfile").write_text(f"worker: {sys.executable} -m djctl work --queues nothing\n")
    up = subprocess.run(djctl_cmd("up"), env=djctl_env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    try:
        def listed(*args: str) -> dict[str, str]:
            out = subprocess.run(djctl_cmd("ps", *args), env=djctl_env, cwd=tmp_path, capture_output=True,
                                 text=True, timeout=60).stdout
            return {m[1]: m[2] for m in re.finditer(r"^(\S+): up (\S+ \S+ \S+)", out, re.M)}
        local = wait_for(lambda: listed().get("worker.1") and listed(), timeout=60, message="worker.1 up in ps")
        everywhere = wait_for(lambda: listed("--all-hosts").get("worker.1") and listed("--all-hosts"), timeout=60,
                              message="worker.1 up in ps --all-hosts")
        assert everywhere["worker.1"] == local["worker.1"]
    finally:
        subprocess.run(djctl_cmd("down"), env=djctl_env, cwd=tmp_path, capture_output=True, timeout=60)
