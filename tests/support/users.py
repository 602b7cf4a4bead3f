"""Acting as another user (uid/gid 65534, nobody) from a forked child: the tests of what
djctl refuses to other users. Needs root."""

from __future__ import annotations

import os
from collections.abc import Callable

OTHER_UID = 65534  # nobody


def as_other_user(fn: Callable[[], str]) -> str:
    """Run ``fn`` in a forked child as uid/gid 65534; return what it returned (a string)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - reported to the parent
                result = f"{type(e).__name__}: {e}"
            os.write(w, result.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out
