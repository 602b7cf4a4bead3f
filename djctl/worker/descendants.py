"""The processes a job leaves behind: found through /proc and killed, wherever they went.

A job's children may stay in its process group, start a session of their own, or
double-fork so that their parent exits. The executor asks to be their *subreaper*
(PR_SET_CHILD_SUBREAPER): an orphan below it is re-parented to it rather than to init,
so every process a job started stays in the executor's tree, whatever group or session
it moved to, and the tree is what gets killed — after each job, at max_run_time, and
when the worker or the supervisor kills the executor.
"""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
_ROUNDS = 50


def become_subreaper() -> bool:
    """Make orphans of this process's descendants its own children; False where the
    kernel cannot (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children(pid: int) -> list[int]:
    """The live (not zombie) children of ``pid``, from /proc; [] if it is gone."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        found.extend(int(c) for c in text.split() if not _zombie(int(c)))
    return found


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, parents before their children."""
    out: list[int] = []
    todo = children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def kill_descendants(pid: int, *, reap: bool = False) -> int:
    """SIGKILL every process below ``pid`` until none is left; how many were killed.

    Each one is stopped before the next look, so none can fork a child the look
    misses; the orphans of the killed re-parent to ``pid`` (its subreaper) and are
    found by the next look. With ``reap`` (``pid`` is this process), the dead are
    collected as they fall.
    """
    killed: set[int] = set()
    for _ in range(_ROUNDS):
        found = [p for p in descendants(pid) if p != os.getpid()]
        if not found:
            break
        for p in found:
            _signal(p, signal.SIGSTOP)
        for p in found:
            _signal(p, signal.SIGKILL)
            killed.add(p)
        if reap:
            reap_children()
    if reap:
        reap_children()
    return len(killed)


def reap_children() -> None:
    """Collect every child of this process that has exited (a subreaper inherits zombies)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone already
    return stat[stat.rindex(")") + 2:].startswith(("Z", "X"))
