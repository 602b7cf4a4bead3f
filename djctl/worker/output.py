"""The worker's own output: lines to stdout that survive a reader going away."""

from __future__ import annotations

import os
import sys


def stdout_log(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
    except BrokenPipeError:
        _lose_stdout()


def flush() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _lose_stdout()


def _lose_stdout() -> None:
    """Nobody reads our output any more (the supervisor was killed, ``| head`` ended):
    carry on into /dev/null, for an exception here would abandon jobs half-recorded."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
