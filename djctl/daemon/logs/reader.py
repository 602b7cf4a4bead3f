"""Reading the supervisor's log: the last lines (:func:`tail`) and every line as it is
written (:func:`follow`), across rotations, filtered by :class:`LogFilter`. Any number of
readers may run beside the one writer."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from djctl.daemon.logs import records
from djctl.daemon.logs.format import LogFilter
from djctl.daemon.logs.writer import FileId, backup_path, backups, file_id

_BLOCK = 64 * 1024
# A "line" longer than this (binary garbage, a runaway print) is cut into pieces so that
# readers keep flat memory; real log lines are far shorter.
_MAX_LINE = 1024 * 1024

_LOST = object()  # _successor: the followed file was deleted


def tail(path: Path, n: int, flt: LogFilter, fmt: str | None = None) -> list[str]:
    """The last ``n`` lines matching ``flt`` (oldest first, without newlines) across
    ``path`` and its rotated files, as stored or (``fmt``) as "text" or "json" lines.
    Reads backwards in blocks, so memory stays small however big the log is; an unfinished last line is left out. Raises
    FileNotFoundError when there is no log at all."""
    path = Path(path)
    try:
        fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not backups(path):
            raise _no_log(path) from None
        fd = None
    try:
        end = _complete_end(fd, os.fstat(fd).st_size) if fd is not None else 0
        return _last_lines(path, fd, end, n, flt, fmt)
    finally:
        if fd is not None:
            os.close(fd)


def follow(
    path: Path,
    flt: LogFilter,
    n: int = 0,
    stop: threading.Event | None = None,
    poll: float = 0.1,
    fmt: str | None = None,
) -> Iterator[str]:
    """Yield the last ``n`` matching lines, then every matching line as it is written,
    until ``stop`` is set (checked between lines and every ``poll`` seconds when idle);
    as stored or (``fmt``) as "text" or "json" lines.

    Survives rotation: when ``path`` names another file, the old one is read to its end
    and then its successor (found by inode among ``path.N``) from its start, so no line
    is lost or repeated. A follower that falls more than ``backups`` rotations behind
    loses the files dropped meanwhile and goes on with the oldest one left; after a log
    is deleted by hand it goes on with the new ``path``.
    Reads incrementally; a partial line is held until its newline arrives.
    Raises FileNotFoundError at once when there is no log at all.
    """
    path = Path(path)
    if not path.exists() and not backups(path):
        raise _no_log(path)
    return _follow(path, flt, n, stop, poll, fmt)


def _follow(
    path: Path, flt: LogFilter, n: int, stop: threading.Event | None, poll: float, fmt: str | None
) -> Iterator[str]:
    f = _open_when_there(path, stop, poll)
    if f is None:
        return
    try:
        st = os.fstat(f.fileno())
        cur: FileId = (st.st_dev, st.st_ino)
        pos = _complete_end(f.fileno(), st.st_size)
        yield from _last_lines(path, f.fileno(), pos, n, flt, fmt)
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
                    text = _accept(raw, flt, fmt)
                    if text is not None:
                        yield text
                continue
            if not draining:
                if file_id(path) == cur:
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
                text = _accept(pending, flt, fmt)
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


def _successor(path: Path, cur: FileId, f: BinaryIO) -> BinaryIO | None | object:
    """The file rotated in right after ``cur`` (open as ``f``), opened; None to try
    again later; _LOST when ``cur`` has been deleted, so nothing says what followed it."""
    for _ in range(3):
        k = _chain_index(path, cur)
        if k is None:
            # Unfound yet still linked means our search raced the writer's renames.
            return _LOST if os.fstat(f.fileno()).st_nlink == 0 else None
        nxt = _open_or_none(path if k == 1 else backup_path(path, k - 1))
        if nxt is None:
            return None  # between the rename and the writer opening the new file
        # Names only ever shift upwards, and path.k is renamed before path.(k-1) is
        # renamed onto it, so if cur still sits at path.k what we opened follows it.
        if file_id(backup_path(path, k)) == cur:
            return nxt
        nxt.close()
    return None


def _first_newer(path: Path, mtime_ns: int) -> BinaryIO | None:
    """The oldest of path.N ... path.1 last written after ``mtime_ns``, else ``path``,
    opened: where to go on after a deleted file, as near its successor as can be told."""
    # A file that fell off the end of the chain is older than every backup left; one
    # deleted by hand is newer than all of them. Replaying old backups would repeat
    # lines, so only a strictly newer backup is taken.
    for _, backup in reversed(backups(path)):
        try:
            newer = os.stat(backup).st_mtime_ns > mtime_ns
        except FileNotFoundError:
            continue
        if newer and (f := _open_or_none(backup)) is not None:
            return f
    return _open_or_none(path)


def _chain_index(path: Path, cur: FileId) -> int | None:
    """N such that path.N is ``cur``, or None."""
    # Probe upwards rather than trust one directory listing: a listing taken while the
    # writer renames may miss an entry, but a file only ever moves up one name per
    # rotation, so an upward probe meets it.
    top = max((i for i, _ in backups(path)), default=0)
    return next((i for i in range(1, top + 2) if file_id(backup_path(path, i)) == cur), None)


def _last_lines(path: Path, fd: int | None, end: int, n: int, flt: LogFilter, fmt: str | None) -> list[str]:
    found: list[str] = []
    if n <= 0:
        return found

    def take(fd: int, end: int) -> bool:
        for raw in _lines_backwards(fd, end):
            text = _accept(raw, flt, fmt)
            if text is not None:
                found.append(text)
                if len(found) >= n:
                    return True
        return False

    if fd is None or not take(fd, end):
        for _, b in backups(path):
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


def _accept(raw: bytes, flt: LogFilter, fmt: str | None) -> str | None:
    text = raw.decode("utf-8", "replace").removesuffix("\r")
    if not text:
        return None
    if not flt.everything:
        record = records.parse(text)
        if record is None or not flt.matches(record.line):
            return None
    return text if fmt is None else records.render(text, fmt)


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
        if not backups(path):
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


def _wait(stop: threading.Event | None, poll: float) -> None:
    if stop is not None:
        stop.wait(poll)
    else:
        time.sleep(poll)


def _no_log(path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"no log yet at {path}; it appears once the supervisor runs (djctl up)")
