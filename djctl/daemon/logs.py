"""The supervisor's log: one file of Heroku-format lines, rotated, tailed and followed.

A line is ``<UTC timestamp with microseconds> <source>[<proc>]: <message>``::

    2026-11-22T10:04:05.123456+00:00 app[worker.1]: *** Starting job worker host:railgun pid:25794
    2026-11-22T10:04:05.200000+00:00 djctl[worker.1]: State changed from starting to up
    2026-11-22T10:04:09.000000+00:00 djctl[djctl]: Stopping all processes with SIGTERM

``source`` is ``app`` for what a process wrote and ``djctl`` for what the supervisor did.
``proc`` is the process (``worker.1``); events that concern the supervisor as a whole
(stopping everything, scaling) use the proc name ``djctl`` (:data:`SUPERVISOR`), so
``-p djctl`` shows exactly those and ``-p worker`` never does.

One process (the supervisor) writes the log through :class:`LogWriter`; any number of
readers use :func:`tail` and :func:`follow`. Rotation renames ``log -> log.1 -> log.2 ...``
and never truncates, which is what lets a follower that holds the old file open finish
reading it and then find its successor by inode.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from djctl.clock import now as utcnow  # the log's clock: timezone-aware UTC

APP = "app"
SUPERVISOR = "djctl"
SOURCES = (APP, SUPERVISOR)

_BLOCK = 64 * 1024
# A "line" longer than this (binary garbage, a runaway print) is cut into pieces so that
# readers keep flat memory; real log lines are far shorter.
_MAX_LINE = 1024 * 1024

_NAME = r"[A-Za-z0-9_-]+"
_PROC = r"[A-Za-z0-9_.-]+"
_NAME_RE = re.compile(_NAME)
_PROC_RE = re.compile(_PROC)
_PROC_FILTER_RE = re.compile(r"[A-Za-z0-9_-]+(?:\.[0-9]+)?")
_LINE_RE = re.compile(
    r"(?P<at>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:[+-][0-9]{2}:[0-9]{2}|Z)) "
    rf"(?P<source>{_NAME})\[(?P<proc>{_PROC})\]:(?: (?P<message>.*))?"
)

_LOST = object()  # _successor: the followed file was deleted

Clock = Callable[[], datetime]
_FileId = tuple[int, int]


@dataclass(frozen=True)
class LogLine:
    """One line of the log. ``at`` must be timezone-aware; ``message`` is one line
    (no ``\\n``, no trailing ``\\r``) so that ``parse(render())`` gives it back."""

    at: datetime
    source: str
    proc: str
    message: str

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("log time must be timezone-aware")
        if not _NAME_RE.fullmatch(self.source):
            raise ValueError(f"bad log source {self.source!r}")
        if not _PROC_RE.fullmatch(self.proc):
            raise ValueError(f"bad process name {self.proc!r}")
        if "\n" in self.message or self.message.endswith("\r"):
            raise ValueError("a log message is one line; LogWriter.write splits longer ones")

    def render(self) -> str:
        """The line as written to the log, without the newline."""
        at = self.at.astimezone(timezone.utc).isoformat(timespec="microseconds")
        return f"{at} {self.source}[{self.proc}]: {self.message}"

    @classmethod
    def parse(cls, line: str) -> LogLine | None:
        """The LogLine that ``line`` renders (a trailing newline is ignored), or None
        when it is not a log line."""
        line = line.removesuffix("\n").removesuffix("\r")
        m = _LINE_RE.fullmatch(line)
        if m is None:
            return None
        try:
            at = datetime.fromisoformat(m["at"]).astimezone(timezone.utc)
        except ValueError:
            return None
        return cls(at, m["source"], m["proc"], m["message"] or "")


@dataclass(frozen=True)
class LogFilter:
    """Which lines a reader wants. ``proc`` is a type (``worker``: worker.1, worker.2
    and a proc named exactly ``worker``) or one process (``worker.1``); ``source`` is
    ``app`` or ``djctl``. None means any. Bad values raise ValueError (one line)."""

    proc: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.proc is not None and not _PROC_FILTER_RE.fullmatch(self.proc):
            raise ValueError(
                f"bad process filter {self.proc!r}; use a type (worker) or a process (worker.1)"
            )
        if self.source is not None and self.source not in SOURCES:
            raise ValueError(f"bad log source {self.source!r}; use {' or '.join(SOURCES)}")

    @property
    def everything(self) -> bool:
        """True when the filter lets every line through."""
        return self.proc is None and self.source is None

    def matches(self, line: LogLine) -> bool:
        """Whether ``line`` passes the filter."""
        if self.source is not None and line.source != self.source:
            return False
        if self.proc is None or line.proc == self.proc:
            return True
        return "." not in self.proc and line.proc.startswith(self.proc + ".")


class LogWriter:
    """Appends lines to ``path``, rotating it past ``max_bytes``; thread-safe.

    The file is created 0600 (missing directories 0700). Each :meth:`write` reaches the
    file before it returns (one ``write(2)``, no buffering) so a follower sees it at once.
    Before a write would take the file over ``max_bytes`` (and the file is not empty),
    the file is rotated: ``path.{backups-1}`` -> ``path.{backups}`` ... ``path`` ->
    ``path.1``, the oldest dropped, a new ``path`` opened. With ``backups=0`` the full
    file is unlinked. If someone else moves or deletes ``path``, the next write
    reopens it. Only one process should write a given log.
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
        clock: Clock = utcnow,
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if backups < 0:
            raise ValueError("backups cannot be negative")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._clock = clock
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._id: _FileId | None = None
        self._size = 0
        self._closed = False
        with self._lock:
            self._open()

    def write(self, source: str, proc: str, message: str) -> None:
        """Append ``message`` as one line per ``\\n``-separated part, all stamped with
        the same time. Trailing line endings are dropped. Raises ValueError for a bad
        source or proc, or when the writer is closed."""
        parts = [p.removesuffix("\r") for p in message.rstrip("\r\n").split("\n")]
        with self._lock:
            if self._closed:
                raise ValueError("log writer is closed")
            at = self._clock()
            text = "".join(LogLine(at, source, proc, p).render() + "\n" for p in parts)
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
        return _file_id(self.path) != self._id

    def _rotate(self) -> None:
        # Close before renaming: a follower that sees the rename may then trust that
        # the old file is complete.
        self._close_fd()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i, backup in reversed(_backups(self.path)):
                if i < self.backups:
                    os.replace(backup, _backup(self.path, i + 1))
            os.replace(self.path, _backup(self.path, 1))
        self._open()


def tail(path: Path, n: int, flt: LogFilter) -> list[str]:
    """The last ``n`` lines matching ``flt`` (oldest first, without newlines) across
    ``path`` and its rotated files. Reads backwards in blocks, so memory stays small
    however big the log is; an unfinished last line is left out. Raises
    FileNotFoundError when there is no log at all."""
    path = Path(path)
    try:
        fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not _backups(path):
            raise _no_log(path) from None
        fd = None
    try:
        end = _complete_end(fd, os.fstat(fd).st_size) if fd is not None else 0
        return _last_lines(path, fd, end, n, flt)
    finally:
        if fd is not None:
            os.close(fd)


def follow(
    path: Path,
    flt: LogFilter,
    n: int = 0,
    stop: threading.Event | None = None,
    poll: float = 0.1,
) -> Iterator[str]:
    """Yield the last ``n`` matching lines, then every matching line as it is written,
    until ``stop`` is set (checked between lines and every ``poll`` seconds when idle).

    Survives rotation: when ``path`` names another file, the old one is read to its end
    and then its successor (found by inode among ``path.N``) from its start, so no line
    is lost or repeated. A follower that falls more than ``backups`` rotations behind
    loses the files dropped meanwhile and goes on with the oldest one left; after a log
    is deleted by hand it goes on with the new ``path``.
    Reads incrementally; a partial line is held until its newline arrives.
    Raises FileNotFoundError at once when there is no log at all.
    """
    path = Path(path)
    if not path.exists() and not _backups(path):
        raise _no_log(path)
    return _follow(path, flt, n, stop, poll)


def _follow(
    path: Path, flt: LogFilter, n: int, stop: threading.Event | None, poll: float
) -> Iterator[str]:
    f = _open_when_there(path, stop, poll)
    if f is None:
        return
    try:
        st = os.fstat(f.fileno())
        cur: _FileId = (st.st_dev, st.st_ino)
        pos = _complete_end(f.fileno(), st.st_size)
        yield from _last_lines(path, f.fileno(), pos, n, flt)
        f.seek(pos)
        pending = b""
        draining = False
        while not (stop is not None and stop.is_set()):
            chunk = f.read(_BLOCK)
            if chunk:
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                if len(pending) > _MAX_LINE:
                    lines.append(pending)
                    pending = b""
                for raw in lines:
                    text = _accept(raw, flt)
                    if text is not None:
                        yield text
                continue
            if not draining:
                if _file_id(path) == cur:
                    if os.fstat(f.fileno()).st_size < f.tell():
                        f.seek(0)  # truncated in place by someone else: start over
                        pending = b""
                    _wait(stop, poll)
                    continue
                # Renamed away. Writes made before the rename may have landed after our
                # last read, so read to the end once more before moving on.
                draining = True
                continue
            if pending:
                text = _accept(pending, flt)
                pending = b""
                if text is not None:
                    yield text
            nxt = _successor(path, cur, f)
            if nxt is _LOST:
                nxt = _first_newer(path, os.fstat(f.fileno()).st_mtime_ns)
            if not isinstance(nxt, io.FileIO):
                _wait(stop, poll)
                continue
            f.close()
            f = nxt
            st = os.fstat(f.fileno())
            cur = (st.st_dev, st.st_ino)
            draining = False
    finally:
        f.close()


def _successor(path: Path, cur: _FileId, f: BinaryIO) -> BinaryIO | None | object:
    """The file rotated in right after ``cur`` (open as ``f``), opened; None to try
    again later; _LOST when ``cur`` has been deleted, so nothing says what followed it."""
    for _ in range(3):
        k = _chain_index(path, cur)
        if k is None:
            # Unfound yet still linked means our search raced the writer's renames.
            return _LOST if os.fstat(f.fileno()).st_nlink == 0 else None
        nxt = _open_or_none(path if k == 1 else _backup(path, k - 1))
        if nxt is None:
            return None  # between the rename and the writer opening the new file
        # Names only ever shift upwards, and path.k is renamed before path.(k-1) is
        # renamed onto it, so if cur still sits at path.k what we opened follows it.
        if _file_id(_backup(path, k)) == cur:
            return nxt
        nxt.close()
    return None


def _first_newer(path: Path, mtime_ns: int) -> BinaryIO | None:
    """The oldest of path.N ... path.1 last written after ``mtime_ns``, else ``path``,
    opened: where to go on after a deleted file, as near its successor as can be told."""
    # A file that fell off the end of the chain is older than every backup left; one
    # deleted by hand is newer than all of them. Replaying old backups would repeat
    # lines, so only a strictly newer backup is taken.
    for _, backup in reversed(_backups(path)):
        try:
            newer = os.stat(backup).st_mtime_ns > mtime_ns
        except FileNotFoundError:
            continue
        if newer and (f := _open_or_none(backup)) is not None:
            return f
    return _open_or_none(path)


def _chain_index(path: Path, cur: _FileId) -> int | None:
    """N such that path.N is ``cur``, or None."""
    # Probe upwards rather than trust one directory listing: a listing taken while the
    # writer renames may miss an entry, but a file only ever moves up one name per
    # rotation, so an upward probe meets it.
    top = max((i for i, _ in _backups(path)), default=0)
    return next((i for i in range(1, top + 2) if _file_id(_backup(path, i)) == cur), None)


def _last_lines(path: Path, fd: int | None, end: int, n: int, flt: LogFilter) -> list[str]:
    found: list[str] = []
    if n <= 0:
        return found

    def take(fd: int, end: int) -> bool:
        for raw in _lines_backwards(fd, end):
            text = _accept(raw, flt)
            if text is not None:
                found.append(text)
                if len(found) >= n:
                    return True
        return False

    if fd is None or not take(fd, end):
        for _, b in _backups(path):
            try:
                bfd = os.open(b, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                if take(bfd, os.fstat(bfd).st_size):
                    break
            finally:
                os.close(bfd)
    found.reverse()
    return found


def _lines_backwards(fd: int, end: int) -> Iterator[bytes]:
    """Lines of the first ``end`` bytes of ``fd``, last first (the part after the last
    newline comes first)."""
    pos, carry = end, b""
    while pos > 0:
        start = max(0, pos - _BLOCK)
        parts = (_pread(fd, pos - start, start) + carry).split(b"\n")
        carry = parts[0]
        yield from reversed(parts[1:])
        if len(carry) > _MAX_LINE:
            yield carry
            carry = b""
        pos = start
    yield carry


def _complete_end(fd: int, size: int) -> int:
    """Offset just past the last newline in the first ``size`` bytes (0 if none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - _BLOCK)
        i = _pread(fd, pos - start, start).rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0


def _accept(raw: bytes, flt: LogFilter) -> str | None:
    text = raw.decode("utf-8", "replace").removesuffix("\r")
    if not text:
        return None
    if flt.everything:
        return text
    line = LogLine.parse(text)
    return text if line is not None and flt.matches(line) else None


def _backup(path: Path, i: int) -> Path:
    return path.with_name(f"{path.name}.{i}")


def _backups(path: Path) -> list[tuple[int, Path]]:
    """Rotated files of ``path`` as (N, path.N), newest (N=1) first; gaps allowed."""
    pattern = re.compile(re.escape(path.name) + r"\.([1-9][0-9]{0,5})")
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    found = sorted((int(m[1]), name) for name in names if (m := pattern.fullmatch(name)))
    return [(i, path.parent / name) for i, name in found]


def _file_id(path: Path) -> _FileId | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _open_or_none(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb", buffering=0)
    except FileNotFoundError:
        return None


def _open_when_there(path: Path, stop: threading.Event | None, poll: float) -> BinaryIO | None:
    # Only reached after follow() saw a log; path may be missing for a moment mid-rotation.
    while not (stop is not None and stop.is_set()):
        f = _open_or_none(path)
        if f is not None:
            return f
        if not _backups(path):
            raise _no_log(path)
        _wait(stop, poll)
    return None


def _pread(fd: int, size: int, offset: int) -> bytes:
    out = b""
    while len(out) < size:
        got = os.pread(fd, size - len(out), offset + len(out))
        if not got:
            break
        out += got
    return out


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


def _wait(stop: threading.Event | None, poll: float) -> None:
    if stop is not None:
        stop.wait(poll)
    else:
        time.sleep(poll)


def _no_log(path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"no log yet at {path}; it appears once the supervisor runs (djctl up)")
