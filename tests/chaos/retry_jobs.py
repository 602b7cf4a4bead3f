"""The job the retry race enqueues (workers import it under DJ_APP=tests.jobs,tests.chaos)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass
class Flaky:
    """Appends ``<key> fail`` on each of its first ``fails`` runs (and raises), then
    ``<key> ok``: the file shows every run, and a line after ``ok`` is a completed job run again."""

    path: str
    key: str
    fails: int = 0
    seconds: float = 0.0

    def perform(self) -> None:
        if self.seconds:
            time.sleep(self.seconds)
        runs = 0
        if os.path.exists(self.path):
            with open(self.path) as f:
                runs = sum(1 for line in f if line.split()[0] == self.key)
        ok = runs >= self.fails
        with open(self.path, "a") as f:
            f.write(f"{self.key} {'ok' if ok else 'fail'}\n")
        if not ok:
            raise RuntimeError(f"{self.key}: failing run {runs + 1} of {self.fails}")

    def reschedule_at(self, attempts: int, now: datetime) -> datetime:
        # Waiting for the next attempt briefly: the race wants many such rows, quickly.
        return now + timedelta(seconds=0.3)
