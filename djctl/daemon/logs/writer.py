"""The supervisor's log writer: appends lines and rotates the file.

One process (the supervisor) writes a log. Rotation renames ``log -> log.1 -> log.2 ...``
and never truncates, which is what lets a follower that holds the old file open finish
reading it and then find its successor by inode (see :mod:`djctl.daemon.logs.reader`).
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from djctl.daemon.logs.format import Clock, LogLine, utcnow
from djctl.daemon.logs.records import Record

FileId = tuple[int, int]


class LogWriter:
    """Appends lines to ``path``, rotating it past ``max_bytes``; thread-safe.

    The file is created 0600 (missing directories 0700). Each :meth:`write` reaches the
    file before it returns (one ``write(2)``, no buffering) so a follower sees it at once.
    Before a write would take the file over ``max_bytes`` (and the file is not empty),
    the file is rotated: ``path.{backups-1}`` -> ``path.{backups}`` ... ``path`` ->
    ``path.1``, the oldest dropped, a new ``path`` opened. With ``backups=0`` the full
    file is unlinked. If someone else moves or deletes ``path``, the next write
    reopens it. Only one process should write a given log. ``fmt`` is "text" (Heroku's
    lines) or "json" (one object a line, see :mod:`.records`).
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
        clock: Clock = utcnow,
        fmt: str = "text",
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if backups < 0:
            raise ValueError("backups cannot be negative")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._clock = clock
        self.fmt = fmt
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._id: FileId | None = None
        self._size = 0
        self._closed = False
        with self._lock:
            self._open()

    def write(self, source: str, proc: str, message: str, level: str = "info") -> None:
        """Append ``message`` as one line per ``\\n``-separated part, all stamped with
        the same time. Trailing line endings are dropped. Raises ValueError for a bad
        source or proc, or when the writer is closed."""
        parts = [p.removesuffix("\r") for p in message.rstrip("\r\n").split("\n")]
        with self._lock:
            at = self._clock()
            lines = [LogLine(at, source, proc, p) for p in parts]
            if self.fmt == "json":
                text = "".join(Record(line, level).to_json() + "\n" for line in lines)
            else:
                text = "".join(line.render() + "\n" for line in lines)
            self._append(text)

    def append(self, line: str) -> None:
        """Append ``line`` as it is (one line, no newline), rotating like :meth:`write`:
        for files of other lines (the events file) kept beside the log. Raises
        ValueError for a line holding a newline, or when the writer is closed."""
        if "\n" in line:
            raise ValueError("append takes one line")
        with self._lock:
            self._append(line + "\n")

    def _append(self, text: str) -> None:
        if self._closed:
            raise ValueError("log writer is closed")
        data = text.encode("utf-8", "backslashreplace")
        if self._fd is None or self._moved():
            self._reopen()
        if self._size > 0 and self._size + len(data) > self.max_bytes:
            self._rotate()
        assert self._fd is not None
        _write_all(self._fd, data)
        self._size += len(data)

    def close(self) -> None:
        """Close the file; later writes raise ValueError. Idempotent."""
        with self._lock:
            self._closed = True
            self._close_fd()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        _make_dirs(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(fd)
        self._fd, self._id, self._size = fd, (st.st_dev, st.st_ino), st.st_size

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _reopen(self) -> None:
        self._close_fd()
        self._open()

    def _moved(self) -> bool:
        return file_id(self.path) != self._id

    def _rotate(self) -> None:
        # Close before renaming: a follower that sees the rename may then trust that
        # the old file is complete.
        self._close_fd()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i, backup in reversed(backups(self.path)):
                if i < self.backups:
                    os.replace(backup, backup_path(self.path, i + 1))
            os.replace(self.path, backup_path(self.path, 1))
        self._open()


def backup_path(path: Path, i: int) -> Path:
    """The name of the ``i``-th rotated file of ``path`` (``log.1`` is the newest)."""
    return path.with_name(f"{path.name}.{i}")


def backups(path: Path) -> list[tuple[int, Path]]:
    """Rotated files of ``path`` as (N, path.N), newest (N=1) first; gaps allowed."""
    pattern = re.compile(re.escape(path.name) + r"\.([1-9][0-9]{0,5})")
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    found = sorted((int(m[1]), name) for name in names if (m := pattern.fullmatch(name)))
    return [(i, path.parent / name) for i, name in found]


def file_id(path: Path) -> FileId | None:
    """(device, inode) of ``path``, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _make_dirs(directory: Path) -> None:
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass
