"""The supervisor's log as the tests read it: a fixed clock, its files in order, the
messages of its lines, a follower's stop event (the ``stop`` fixture, registered in the
root conftest) and ways to take lines from a follower. No tests here."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from djctl.daemon.logs import LogLine

UTC = timezone.utc
T0 = datetime(2026, 11, 22, 10, 4, 5, 123456, tzinfo=UTC)


def ticking_clock(start: datetime = T0) -> Callable[[], datetime]:
    """A clock that advances one microsecond per call."""
    counter = itertools.count()
    return lambda: start + timedelta(microseconds=next(counter))


def files_oldest_first(path: Path) -> list[Path]:
    backups = sorted(path.parent.glob(path.name + ".*"), key=lambda p: int(p.suffix[1:]))
    return list(reversed(backups)) + ([path] if path.exists() else [])


def messages(lines: list[str]) -> list[str]:
    parsed = [LogLine.parse(line) for line in lines]
    assert None not in parsed, lines
    return [p.message for p in parsed]


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    """A stop event for follow() that a watchdog sets after 60 s, so a follower that
    misses a line fails the test (next() raises StopIteration) instead of hanging it."""
    event = threading.Event()
    watchdog = threading.Timer(60.0, event.set)
    watchdog.start()
    yield event
    watchdog.cancel()


def consume_until(lines: Iterator[str], last: str) -> Iterator[str]:
    """Iterate ``lines`` up to and including the one that ends with ``last``."""
    for line in lines:
        yield line
        if line.endswith(last):
            return
    pytest.fail(f"follow stopped before {last!r} arrived")


def take(lines: Iterator[str], count: int) -> list[str]:
    got = list(itertools.islice(lines, count))
    assert len(got) == count, f"follow stopped after {len(got)} of {count} lines"
    return got
