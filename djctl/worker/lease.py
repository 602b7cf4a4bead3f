"""The worker's lease on the claims it holds, and the fence that keeps it honest.

Another worker may take a claim over once its lease has gone unrenewed for
``heartbeat_timeout`` (by the database's clock). So a worker that cannot renew — the
database is unreachable, or a partition holds every byte of its connection — must stop
its job in hand before that can happen: the guard counts from when the last successful
renewal was *sent* (the database stamped it no earlier), and at ``timeout - margin`` it
kills the executor and breaks the hung connection. It runs on a thread of its own,
because the loop may be stuck in a read that no driver times out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def margin(interval: float, timeout: float) -> float:
    """How long before the lease could expire the worker stops its job: room for two
    missed renewals or a quarter of the lease, at most half of it."""
    return min(max(2 * interval, 0.25 * timeout), 0.5 * timeout)


class Guard:
    """Arms with :meth:`renewed` while claims are held; past the deadline it calls
    ``fence`` once (from its own thread) and :attr:`fenced` stays set until :meth:`clear`."""

    def __init__(self, interval: float, timeout: float, fence: Callable[[], None],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.span = timeout - margin(interval, timeout)
        self.fence = fence
        self.monotonic = monotonic
        self.fenced = False
        self._deadline: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tick = max(0.05, min(interval / 2, 0.5))
        self._thread = threading.Thread(target=self._run, name="djctl-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def renewed(self, sent: float) -> None:
        """Every claim held was renewed (or claimed) by a round sent at monotonic ``sent``."""
        with self._lock:
            self._deadline = sent + self.span

    def idle(self) -> None:
        """No claim is held: nothing to fence."""
        with self._lock:
            self._deadline = None

    def expired(self) -> bool:
        """Whether the held claims' lease may be about to expire unrenewed."""
        with self._lock:
            deadline = self._deadline
        return self.fenced or (deadline is not None and self.monotonic() >= deadline)

    def clear(self) -> None:
        """The fence has been dealt with: disarm until the next claim."""
        with self._lock:
            self.fenced = False
            self._deadline = None

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            with self._lock:
                due = not self.fenced and self._deadline is not None and self.monotonic() >= self._deadline
                if due:
                    self.fenced = True
            if due:
                self.fence()
