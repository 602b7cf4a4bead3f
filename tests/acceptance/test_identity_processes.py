"""The one liveness check against real processes: zombies and the missing count as dead."""

from __future__ import annotations

import os
import subprocess
import sys

from djctl.worker import identity


def test_pid_alive_counts_zombies_and_the_missing_as_dead():
    assert identity.pid_alive(os.getpid())
    assert not identity.pid_alive(None) and not identity.pid_alive(0)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert not identity.pid_alive(child.pid)
    child.wait()
    assert not identity.pid_alive(child.pid)
