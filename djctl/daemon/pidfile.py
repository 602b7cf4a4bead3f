"""The supervisor's pid file: held with flock(2) for as long as the supervisor lives.

The lock, not the file's existence, says whether a supervisor runs: a supervisor
killed with SIGKILL leaves an unlocked file that the next one simply takes over. The
file holds the holder's pid in decimal; anything else is corrupt and reported, never
silently overwritten.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import time
from pathlib import Path

_PID = re.compile(rb"\s*([0-9]{1,10})\s*")


class PidFileError(ValueError):
    """The pid file cannot be read or is corrupt (one line, says what to do)."""


class AlreadyRunning(Exception):
    """Another supervisor holds the pid file; ``pid`` is its pid (None while it is
    still writing it)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid


class PidFile:
    """``path``, locked by the running supervisor."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def running(self) -> int | None:
        """The pid of the supervisor holding the file, or None when none does. A
        supervisor still starting may hold it before writing its pid: then -1. Raises
        PidFileError for a corrupt file that nobody holds."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise PidFileError(f"cannot read pid file {self.path}: {e.strerror}") from None
        try:
            held = _locked(fd)
            content = _read(fd)
        finally:
            os.close(fd)
        pid = _parse(content)
        if held:
            return pid if pid is not None else -1
        if content.strip() and pid is None:
            raise self._corrupt()
        return None

    def acquire(self) -> None:
        """Lock the file and write our pid. Raises AlreadyRunning when another process
        holds it, PidFileError when it is corrupt."""
        busy = 0
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as e:
                raise PidFileError(f"cannot open pid file {self.path}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                content = _read(fd)
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise PidFileError(f"cannot lock pid file {self.path}: {e.strerror}") from None
                busy += 1
                # running() probes with a brief shared lock; only a lock that stays is a holder.
                if busy >= 20:
                    raise AlreadyRunning(_parse(content)) from None
                time.sleep(0.01)
                continue
            # The previous holder unlinks the file as it exits; a lock on that unlinked
            # file would guard nothing, so lock the file that is there now.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            content = _read(fd)
            if content.strip() and _parse(content) is None:
                os.close(fd)
                raise self._corrupt()
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            os.fsync(fd)
            self._fd = fd
            return

    def release(self) -> None:
        """Remove the file and drop the lock (in that order, see acquire). Idempotent."""
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    @property
    def fileno(self) -> int | None:
        """The locked descriptor (to keep open across a fork), or None."""
        return self._fd

    def _corrupt(self) -> PidFileError:
        return PidFileError(
            f"pid file {self.path} is corrupt (not a process id); "
            "if no supervisor is running, delete it and try again"
        )


def _locked(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _read(fd: int) -> bytes:
    return os.pread(fd, 64, 0)


def _parse(content: bytes) -> int | None:
    m = _PID.fullmatch(content)
    return int(m[1]) if m else None
