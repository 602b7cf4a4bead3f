"""The jobs every benchmark runs: a no-op, and one that records when it started.

Workers run these with DJ_APP=bench.jobs (and PYTHONPATH at the repository root).
The same two bodies serve every queue compared: djctl runs the classes, the peers
the functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


def noop() -> None:
    """Does nothing: what is measured is the queue around it."""


def stamp(path: str, i: int) -> None:
    """Appends ``i`` and the wall-clock time at which the job started to ``path``."""
    started = time.time()
    with open(path, "a") as f:
        f.write(f"{i} {started:.6f}\n")


@dataclass
class Noop:
    def perform(self) -> None:
        noop()


@dataclass
class Stamp:
    path: str
    i: int

    def perform(self) -> None:
        stamp(self.path, self.i)


@dataclass
class Block:
    """Writes the pid running it to ``path``, then blocks in select(2) until killed: the job
    ``bench.cancel`` cancels."""

    path: str

    def perform(self) -> None:
        import os
        import select

        with open(self.path, "w") as f:
            f.write(str(os.getpid()))
        r, _w = os.pipe()
        select.select([r], [], [], None)
