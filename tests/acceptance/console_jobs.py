"""Jobs for the console's acceptance tests (workers import them under DJ_APP=tests.jobs,tests.acceptance)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


@dataclass
class Spin:
    """Burns CPU until the file ``stop`` exists (or ``limit`` seconds pass): a job whose
    process the console must find busy."""

    stop: str
    limit: float = 120.0

    def perform(self) -> None:
        deadline = time.monotonic() + self.limit
        n = 0
        while time.monotonic() < deadline:
            for _ in range(200_000):
                n += 1
            if os.path.exists(self.stop):
                return
