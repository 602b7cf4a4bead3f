"""Jobs the tests enqueue. Workers in tests run with DJ_APP=tests.jobs."""

from __future__ import annotations

import enum
import json
import os
import select
import signal
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path  # tests also name tests.jobs:Path, a class from outside

import djctl


@dataclass
class Touch:
    """Appends its key to a file: the file shows every run, in order."""

    path: str
    key: str
    seconds: float = 0.0

    def perform(self) -> None:
        if self.seconds:
            time.sleep(self.seconds)
        with open(self.path, "a") as f:
            f.write(f"{self.key}\n")


@dataclass
class Fail:
    message: str = "boom"

    def perform(self) -> None:
        raise RuntimeError(self.message)


@dataclass
class Forger:
    """Prints what could pose as other log lines: ``fakes`` reports of jobs completed that
    do not exist, ANSI escapes that would erase lines, and the supervisor's own words after
    each separator a reader might split on — each of those marked ``FORGED<n>``."""

    fakes: int = 100

    def perform(self) -> None:
        for i in range(self.fakes):
            print(f"[Worker(host:forged pid:1)] Job Touch (id={900000 + i}) COMPLETED after 0.0010")
        print("\x1b[1A\x1b[2K\x1b[2Jerased")
        said = "2026-12-02T10:04:05.000000+00:00 djctl[worker.7]: State changed from up to FORGED"
        for n, separator in enumerate(("\r", "\x1e", "\u2028", "\x85", "\x0b")):
            print(f"job says{separator}{said}{n}", flush=True)


@djctl.job
@dataclass
class FailFirst:
    """Raises on its first run, succeeds afterwards."""

    path: str

    def perform(self) -> None:
        marker = Path(self.path)
        if not marker.exists():
            marker.write_text("")
            raise RuntimeError("the first run fails\nwith a second line")
        with open(marker, "a") as f:
            f.write("ran\n")


@djctl.job
@dataclass
class HangFirst:
    """Hangs on its first run (until its worker is killed); later runs append a line."""

    path: str

    def perform(self) -> None:
        marker = Path(self.path)
        if not marker.exists():
            marker.write_text("")
            time.sleep(120)
        with open(marker, "a") as f:
            f.write("ran\n")


def add_line(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text + "\n")


# -- jobs for the contract suite ----------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True)
class Point:
    x: int
    y: int


def record(path: str, *args, **kwargs) -> None:
    """Writes repr(args, kwargs) as one line: tests compare it to what they enqueued."""
    with open(path, "a") as f:
        f.write(repr((args, kwargs)) + "\n")


@dataclass
class Hooked:
    """Writes each hook it goes through to ``path``; ``fail`` makes perform raise."""

    path: str
    fail: bool = False

    def _note(self, text: str) -> None:
        with open(self.path, "a") as f:
            f.write(text + "\n")

    def before(self) -> None:
        self._note("before")

    def perform(self) -> None:
        self._note("perform")
        if self.fail:
            raise ValueError("hooked failure")

    def after(self) -> None:
        self._note("after")

    def success(self) -> None:
        self._note("success")

    def error(self, exc: BaseException) -> None:
        self._note(f"error {type(exc).__name__}: {exc}")

    def failure(self) -> None:
        self._note("failure")


@dataclass
class Overridden:
    """Fails every time, with its own max_attempts, reschedule_at and queue."""

    max_attempts = 2
    queue_name = "special"

    def perform(self) -> None:
        raise RuntimeError("overridden failure")

    def reschedule_at(self, attempts: int, now: datetime) -> datetime:
        return now + timedelta(hours=attempts)


@dataclass
class Sleeper:
    """Writes ``start`` to ``path``, sleeps in Python, and writes ``end``."""

    path: str
    seconds: float
    max_run_time = 0.3

    def perform(self) -> None:
        add_line(self.path, "start")
        time.sleep(self.seconds)
        add_line(self.path, "end")


@dataclass
class Gate:
    """Writes ``start``, waits (up to ``limit`` seconds) until the file ``gate`` exists, writes ``end``.

    ``fail`` makes it raise after the gate opens.
    """

    path: str
    gate: str
    fail: bool = False
    limit: float = 60.0

    def perform(self) -> None:
        add_line(self.path, f"start {os.getpid()}")
        deadline = time.monotonic() + self.limit
        while not os.path.exists(self.gate) and time.monotonic() < deadline:
            time.sleep(0.01)
        add_line(self.path, "end")
        if self.fail:
            raise RuntimeError("gate failure")


@dataclass
class StuckInSyscall:
    """Blocks in select(2) on a pipe nobody writes to, with the stop signals blocked:
    only SIGKILL ends it, as for a job stuck in C code."""

    path: str

    def perform(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM})
        add_line(self.path, f"start {os.getpid()}")
        r, _w = os.pipe()
        select.select([r], [], [], None)


@dataclass
class KillSelf:
    """SIGKILLs the process running it, every time."""

    path: str

    def perform(self) -> None:
        add_line(self.path, "kill")
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class TakeOver:
    """While running, rewrites its own row's locked_by as if another worker had taken it over."""

    key: str
    fail: bool = False

    def perform(self) -> None:
        from sqlalchemy import text

        with djctl.engine().begin() as conn:
            conn.execute(
                text("UPDATE delayed_jobs SET locked_by = 'host:elsewhere pid:1' WHERE handler LIKE :k"),
                {"k": f"%{self.key}%"},
            )
        if self.fail:
            raise RuntimeError("late failure")


def write_json(path: str, value) -> None:
    """Writes ``value`` as JSON (tests read back what a worker saw)."""
    with open(path, "w") as f:
        json.dump(value, f)


class Mailer:
    """Methods and classmethods to delay."""

    def __init__(self, path: str, sender: str):
        self.path = path
        self.sender = sender

    def send(self, to: str, when: datetime | None = None) -> None:
        add_line(self.path, f"{self.sender}->{to}@{when.isoformat() if when else '-'}")

    @classmethod
    def broadcast(cls, path: str, text: str) -> None:
        add_line(path, f"broadcast {text}")

    @staticmethod
    def ping(path: str) -> None:
        add_line(path, "ping")

    @djctl.handle_asynchronously(priority=7, queue="mail")
    def later(self, to: str) -> None:
        add_line(self.path, f"later {self.sender}->{to}")


@djctl.handle_asynchronously(run_at=lambda: djctl.now() + timedelta(days=1))
def tomorrow(path: str, text: str) -> None:
    add_line(path, f"tomorrow {text}")


@djctl.handle_asynchronously
def soon(path: str, text: str) -> None:
    add_line(path, f"soon {text}")
