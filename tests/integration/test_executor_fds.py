"""Issue 14, point 11: a job that closes its stdin, stdout and stderr (the fds, or the
Python streams) does not break the executor for the jobs after it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import djctl


@djctl.job
def close_std_fds() -> None:
    """Closes fds 0, 1 and 2 under the executor, as a careless daemonising job does."""
    for fd in (0, 1, 2):
        os.close(fd)


@djctl.job
def close_std_streams() -> None:
    sys.stdout.close()
    sys.stderr.close()


@djctl.job
def say(path: str, text: str) -> None:
    """Prints ``text`` to stdout and stderr (and fd 1 directly), then notes in ``path`` that it did."""
    print(text)
    print(text, file=sys.stderr)
    os.write(1, text.encode() + b"\n")
    with open(path, "a") as f:
        f.write(text + "\n")


def test_jobs_print_after_one_closed_fds_0_1_and_2(engine, tmp_path: Path, capfd):
    out = tmp_path / "said.txt"
    djctl.delay(say, priority=0)(str(out), "before")
    djctl.delay(close_std_fds, priority=1)()
    djctl.delay(say, priority=2)(str(out), "after-fds")
    djctl.delay(close_std_streams, priority=3)()
    djctl.delay(say, priority=4)(str(out), "after-streams")
    assert djctl.Worker().work_off(10) == (5, 0)
    assert out.read_text().split() == ["before", "after-fds", "after-streams"]
    printed = capfd.readouterr()
    assert printed.out.count("after-streams") == 2 and "after-streams" in printed.err
