"""The console's view of the supervisor's log and events: a bounded tail and the
throughput it shows.

djctl deletes a job when it completes, so the database cannot say how many jobs were
done a minute ago. The events file can: every worker reports one JSON object per job
outcome on its event pipe, and the supervisor appends it to ``events.log`` beside the
log. :class:`Throughput` counts those events per second of their own ``ts``, so the
chart is right at once (its history comes from the file's last lines) and costs no
query; no wording of a human log line can change it. It counts what this host's
supervisor ran; other hosts' workers show in their own consoles.

Memory stays flat however fast the log grows: the follower reads 64 KiB blocks
(djctl.daemon.client.follow_log), keeps at most ``keep`` lines for the screen, and the
throughput keeps one counter pair per second of its window.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from djctl.daemon import client


class Throughput:
    """Jobs completed and failed per second, over the last ``window`` seconds."""

    def __init__(self, window: int = 120) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._seconds: dict[int, list[int]] = {}
        self._newest = 0

    def record(self, event: Mapping[str, Any]) -> None:
        """Count one job outcome from the events file (``completed``, ``failed`` or
        ``failed_permanently``) in the second of its ``ts``; anything else is ignored."""
        kind = event.get("event")
        if kind not in client.OUTCOMES:
            return
        try:
            at = datetime.fromisoformat(str(event.get("ts")))
        except ValueError:
            return
        if at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
        second = int(at.timestamp())
        with self._lock:
            if second <= self._newest - self.window:
                return
            self._seconds.setdefault(second, [0, 0])[0 if kind == client.COMPLETED else 1] += 1
            if second > self._newest:
                self._newest = second
                cutoff = second - self.window
                for s in [s for s in self._seconds if s <= cutoff]:
                    del self._seconds[s]

    def series(self, now: datetime) -> tuple[list[int], list[int]]:
        """Completed and failed counts for each of the ``window`` seconds before ``now``, oldest first."""
        end = int(now.timestamp())
        with self._lock:
            counts = [self._seconds.get(s, (0, 0)) for s in range(end - self.window + 1, end + 1)]
        return [c[0] for c in counts], [c[1] for c in counts]

    def rates(self, now: datetime, span: int = 10) -> tuple[float, float]:
        """Completed and failed per second, averaged over the last ``span`` whole seconds."""
        done, failed = self.series(now)
        # The current second is still filling: leave it out.
        return sum(done[-span - 1:-1]) / span, sum(failed[-span - 1:-1]) / span


class LogFollower:
    """Follows the log at ``path`` through ``flt`` into a buffer of at most ``keep``
    lines that the screen drains with :meth:`take`; starts with the last ``backlog``
    matching lines. ``on_line`` sees every line that passes (for :class:`Throughput`).
    Waits for the log to appear; :attr:`status` says what it is doing."""

    def __init__(self, path: Path | None, flt: client.LogFilter = client.LogFilter(), keep: int = 1000,
                 backlog: int = 200, on_line: Callable[[str], None] | None = None, store: bool = True,
                 poll: float = 0.1) -> None:
        self.path = path
        self.filter = flt
        self.backlog = backlog
        self.on_line = on_line
        self.store = store
        self.poll = poll
        self._lines: deque[str] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.status = ("no log" if path is None
                       else f"no log yet at {path}; it appears once the supervisor runs (djctl up)")

    def run(self, stop: threading.Event) -> None:
        """Follow until ``stop`` is set (blocking: run it in a thread)."""
        if self.path is None:
            return
        while not stop.is_set():
            try:
                lines = client.follow_log(self.path, self.filter, n=self.backlog, stop=stop, poll=self.poll)
            except FileNotFoundError:
                stop.wait(max(self.poll, 0.5))
                continue
            self.status = f"following {self.path.name}"
            try:
                for line in lines:
                    if self.on_line is not None:
                        self.on_line(line)
                    if self.store:
                        with self._lock:
                            self._lines.append(line)
            except FileNotFoundError:
                # The log was removed by hand mid-rotation: wait for it to come back.
                stop.wait(self.poll)
            # Coming back after a restart of the log, skip the backlog we already showed.
            self.backlog = 0

    def take(self) -> list[str]:
        """The lines that arrived since the last call (at most ``keep``, the newest)."""
        with self._lock:
            out = list(self._lines)
            self._lines.clear()
        return out



class EventFollower:
    """Follows the events file at ``path`` and hands each job outcome to ``on_event``
    (for :class:`Throughput`), starting with the last ``backlog``; waits for the file
    to appear and for it to come back after it was removed."""

    def __init__(self, path: Path | None, on_event: Callable[[Mapping[str, Any]], None], backlog: int = 5000,
                 poll: float = 0.1) -> None:
        self.path = path
        self.on_event = on_event
        self.backlog = backlog
        self.poll = poll

    def run(self, stop: threading.Event) -> None:
        """Follow until ``stop`` is set (blocking: run it in a thread)."""
        if self.path is None:
            return
        while not stop.is_set():
            try:
                for event in client.follow_events(self.path, n=self.backlog, stop=stop, poll=self.poll):
                    self.on_event(event)
            except FileNotFoundError:
                stop.wait(max(self.poll, 0.5))
                continue
            self.backlog = 0
