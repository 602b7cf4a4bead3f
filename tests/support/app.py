"""An application directory driven through the real ``djctl`` CLI, for the supervisor's
acceptance and chaos tests. No tests here."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from djctl import config
from djctl.cli import main as cli
from djctl.daemon.control import Client
from tests.support.commands import djctl_cmd
from tests.support.waiting import wait_for

LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 (app|djctl)\[[A-Za-z0-9_.-]+\]: .*")

# Short intervals everywhere: tests wait for conditions, never for defaults.
FAST = {
    "DJ_GRACE_PERIOD": "5",
    "DJ_HEARTBEAT_INTERVAL": "0.2",
    "DJ_HEARTBEAT_TIMEOUT": "30",
    "DJ_RESTART_BACKOFF": "0.1",
    "DJ_RESTART_BACKOFF_MAX": "1",
    "DJ_RESTART_STABLE_AFTER": "2",
    "DJ_UP_AFTER": "10",  # a worker is up when it says so (its first line)
    "DJ_SLEEP_DELAY": "0.2",
}


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


class App:
    """One application directory with its own state dir, talking to ``db_url``."""

    def __init__(self, root: Path, env: dict[str, str], db_url: str, procfile: str | None = None,
                 **extra: str) -> None:
        self.dir = root
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state = self.dir / ".djctl"
        self.db_url = db_url
        self.env = {**env, **FAST, "DJ_STATE_DIR": str(self.state), **extra}
        self.env.pop("NOTIFY_SOCKET", None)
        if procfile is not None:
            (self.dir / "Procfile").write_text(procfile)

    def run(self, *args: str, ok: bool = True, timeout: float = 90) -> subprocess.CompletedProcess:
        result = subprocess.run(djctl_cmd(*args), cwd=self.dir, env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if ok and result.returncode != 0:
            raise AssertionError(f"djctl {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def cli(self, *args: str, ok: bool = True) -> Result:
        """Run ``djctl args`` in this process (as the user would in the app directory),
        sparing an interpreter start; ``up`` must use :meth:`run` (it forks a daemon)."""
        assert args[0] != "up", "up forks a daemon: use App.run"
        previous_cwd, previous_settings = os.getcwd(), config._current
        os.chdir(self.dir)
        try:
            result = CliRunner().invoke(cli.main, list(args), env=self.env, catch_exceptions=False)
        finally:
            os.chdir(previous_cwd)
            config._current = previous_settings
        out = Result(result.exit_code, result.stdout, result.stderr)
        if ok and out.returncode != 0:
            raise AssertionError(f"djctl {' '.join(args)} exited {out.returncode}: {out.stderr}")
        return out

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        kwargs.setdefault("env", self.env)
        return subprocess.Popen(djctl_cmd(*args), cwd=self.dir, **kwargs)

    # -- reading the supervisor --------------------------------------------------------

    def ps(self) -> list[dict]:
        """The processes, asked over the control socket (what ``ps --json`` prints;
        polling through the CLI would start an interpreter each time)."""
        return Client(self.state).request("ps")["processes"]

    def up_pids(self, type_name: str = "worker") -> dict[str, int]:
        """name -> pid of the processes of a type that are up."""
        return {p["name"]: p["pid"] for p in self.ps() if p["type"] == type_name and p["state"] == "up"}

    def wait_up(self, count: int, type_name: str = "worker", timeout: float = 30) -> dict[str, int]:
        def ready():
            procs = [p for p in self.ps() if p["type"] == type_name]
            if len(procs) == count and all(p["state"] == "up" for p in procs):
                return {p["name"]: p["pid"] for p in procs}
            return None

        return wait_for(ready, timeout, message=f"{count} {type_name} processes up")

    def supervisor_pid(self) -> int:
        return int((self.state / "djctl.pid").read_text())

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.supervisor_pid()).children()

    def ours(self) -> list[psutil.Process]:
        """Every live process started for this app: its state dir is in its environment, or
        it runs in the app's directory (a worker's title, once set, covers what
        /proc/PID/environ shows, so its environment can no longer be read)."""
        found = []
        home = self.dir.resolve()
        for p in psutil.process_iter():
            if p.pid == os.getpid():
                continue
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    continue
                if p.environ().get("DJ_STATE_DIR") == str(self.state) or Path(p.cwd()) == home:
                    found.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def log(self) -> list[str]:
        path = self.state / "djctl.log"
        return path.read_text().splitlines() if path.exists() else []

    def log_has(self, pattern: str) -> list[str]:
        return [line for line in self.log() if re.search(pattern, line)]

    # -- cleaning up -------------------------------------------------------------------

    def kill_everything(self) -> None:
        for p in self.ours():
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        wait_for(lambda: not self.ours(), 10, message="leftover processes killed")


def kill_processes_in(directory: Path) -> None:
    """SIGKILL every process running in ``directory`` (a test's own supervisor and
    workers, should a graceful stop not have ended them), so none outlives its test and
    takes the next test's jobs."""
    home = directory.resolve()
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and Path(p.cwd()) == home:
                p.send_signal(signal.SIGKILL)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue


def heavy(db_kind: str) -> None:
    """Heavy acceptance tests run on SQLite and PostgreSQL (the issue's databases)."""
    if db_kind == "mysql":
        pytest.skip("heavy supervisor tests run on SQLite and PostgreSQL")



def running_app(request: pytest.FixtureRequest, tmp_path: Path, name: str = "app", procfile: str | None = None,
                **extra: str) -> Iterator[App]:
    """An :class:`App` on the test's database (fixtures ``db_url`` and ``djctl_env``), for a
    fixture to ``yield from``: every process started for it is killed afterwards."""
    app = App(tmp_path / name, request.getfixturevalue("djctl_env"), request.getfixturevalue("db_url"),
              procfile, **extra)
    try:
        yield app
    finally:
        app.kill_everything()
