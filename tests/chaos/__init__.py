"""The chaos tier: djctl under faults, load and bad input, with real processes, signals and
databases (issue 8). This module holds the jobs the chaos tests enqueue; workers run
them with DJ_APP=tests.jobs,tests.chaos (see conftest.CHAOS_APP), so it imports nothing
heavy."""

from __future__ import annotations

import ctypes
import os
import resource
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import djctl


def _line(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text + "\n")


def _soon(attempts: int, now: datetime) -> datetime:
    # Poison jobs retry at once: the test waits for their attempts, not for backoff.
    return now + timedelta(seconds=0.2)


@dataclass
class Record:
    """Sleeps ``seconds``, then appends ``<key> <worker pid>``: the file shows every run, and who ran it."""

    path: str
    key: str
    seconds: float = 0.0

    def perform(self) -> None:
        if self.seconds:
            time.sleep(self.seconds)
        _line(self.path, f"{self.key} {os.getppid()}")


@dataclass
class Span:
    """Writes ``start <key>``, sleeps ``seconds``, writes ``end <key>``: a job cut short shows."""

    path: str
    key: str
    seconds: float

    def perform(self) -> None:
        _line(self.path, f"start {self.key}")
        time.sleep(self.seconds)
        _line(self.path, f"end {self.key}")


@dataclass
class Spawner:
    """Enqueues ``Record(path, key + ".child")`` from inside the job (a job that writes to the
    database), then records itself."""

    path: str
    key: str

    def perform(self) -> None:
        djctl.enqueue(Record(self.path, f"{self.key}.child"))
        _line(self.path, f"{self.key} {os.getppid()}")


@dataclass
class Segfault:
    """Dereferences NULL: the process running it dies of SIGSEGV, every time."""

    path: str
    max_attempts = 2

    def perform(self) -> None:
        _line(self.path, "segfault")
        ctypes.string_at(0)


@dataclass
class Hog:
    """Caps its own address space, then allocates until the allocator gives up."""

    path: str
    max_attempts = 2
    reschedule_at = staticmethod(_soon)

    def perform(self) -> None:
        _line(self.path, "hog")
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (vm + (64 << 20), hard))
        chunks = []
        while True:
            chunks.append(bytearray(8 << 20))


@dataclass
class Forever:
    """Never returns: sleeps, and shrugs off the timeout its worker raises in it."""

    path: str
    max_attempts = 2
    max_run_time = 0.5
    reschedule_at = staticmethod(_soon)

    def perform(self) -> None:
        _line(self.path, f"forever {os.getpid()}")
        while True:
            try:
                time.sleep(3600)
            except BaseException:  # noqa: BLE001 - that is the point of this job
                pass


@dataclass
class Traced:
    """Writes ``start``, a ``tick`` every 0.1 s, then ``end`` — each ``<what> <key> <worker pid>
    <time>`` — over ``seconds``: a run cut short ends at its last tick, and two runs at
    once overlap in time."""

    path: str
    key: str
    seconds: float

    def perform(self) -> None:
        me = os.getppid()
        _line(self.path, f"start {self.key} {me} {time.time():.3f}")
        until = time.monotonic() + self.seconds
        while time.monotonic() < until:
            time.sleep(0.1)
            _line(self.path, f"tick {self.key} {me} {time.time():.3f}")
        _line(self.path, f"end {self.key} {me} {time.time():.3f}")
