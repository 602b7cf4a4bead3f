"""Jobs the hardening chaos tests enqueue (issue 14, points 4 and 7); workers import them
under DJ_APP=tests.jobs,tests.chaos."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass


def _line(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text + "\n")


@dataclass
class Overrun:
    """Writes ``start <key>``, sleeps ``seconds`` (past any max_run_time the test sets),
    writes ``end <key>``. One attempt only: the test counts runs, not retries."""

    path: str
    key: str
    seconds: float
    max_attempts = 1

    def perform(self) -> None:
        _line(self.path, f"start {self.key}")
        time.sleep(self.seconds)
        _line(self.path, f"end {self.key}")


@dataclass
class Big:
    """Carries ``blob`` (a large argument) and appends ``<key> <len(blob)>`` when it runs."""

    path: str
    key: str
    blob: str

    def perform(self) -> None:
        _line(self.path, f"{self.key} {len(self.blob)}")


@dataclass
class Offspring:
    """Starts three ``sleep`` processes that try to outlive the job — one in its process
    group, one in a new session, one double-forked into a new session — writes their pids
    to ``path`` (one a line), then sleeps ``seconds``."""

    path: str
    seconds: float
    max_attempts = 1

    def perform(self) -> None:
        same_group = subprocess.Popen(["sleep", "600"])
        new_session = subprocess.Popen(["sleep", "600"], start_new_session=True)
        read, write = os.pipe()
        middle = os.fork()
        if middle == 0:
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                os.execvp("sleep", ["sleep", "600"])
            os.write(write, f"{grandchild}\n".encode())
            os._exit(0)
        os.waitpid(middle, 0)
        os.close(write)
        with os.fdopen(read) as f:
            double_forked = int(f.read())
        _line(self.path, f"{same_group.pid}\n{new_session.pid}\n{double_forked}")
        time.sleep(self.seconds)
