"""huey's SqliteHuey under the same measurements as djctl on SQLite.

huey as documented: a SqliteHuey on its own file (WAL; synchronous left at SQLite's
default, FULL — the same durability as djctl), one consumer with one worker thread,
periodic tasks off, default polling (0.1 s, backing off to 10 s when idle). Its
tasks are plain functions calling the same bench.jobs bodies. huey has no bulk
enqueue, so ``fill`` enqueues one by one (that rate is reported too).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from . import common, jobs


def _huey(path: Path):
    from huey import SqliteHuey

    huey = SqliteHuey(name="bench", filename=str(path))

    @huey.task(name="noop")
    def noop() -> None:
        jobs.noop()

    @huey.task(name="stamp")
    def stamp(path: str, i: int) -> None:
        jobs.stamp(path, i)

    return huey, noop, stamp


class Huey:
    name = "huey"

    def __init__(self, tmp: Path):
        self.tmp = tmp / self.name
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.log = self.tmp / "workers.log"
        self.path = self.tmp / "huey.sqlite3"
        self.huey, self.noop, self.stamp = _huey(self.path)

    def close(self) -> None:
        self.huey.storage.close()

    def reset(self) -> None:
        self.huey.flush()

    def enqueue_one(self, n: int) -> float:
        started = time.perf_counter()
        self.fill(n)
        elapsed = time.perf_counter() - started
        self.reset()
        return elapsed

    def fill(self, n: int, batch: int = 0) -> None:
        for _ in range(n):
            self.noop()

    def process(self, workers: int, n: int) -> float:
        """One consumer with ``workers`` worker threads (huey's own way to run several)."""
        self.reset()
        self.fill(n)
        self.huey.storage.close()
        elapsed = common.run_workers(1, lambda: self._consume(n, workers), self.log)
        left = self.huey.pending_count()
        if left:
            raise RuntimeError(f"huey left {left} tasks; see {self.log}")
        return elapsed

    def _consume(self, n: int | None, workers: int = 1) -> None:
        """A consumer in this (forked) process; with ``n``, exit once ``n`` tasks completed."""
        from huey.signals import SIGNAL_COMPLETE

        huey, _, _ = _huey(self.path)
        consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=False,
                                        check_worker_health=False)
        if n is None:
            consumer.run()
            return
        done = threading.Event()
        count = [0]

        @huey.signal(SIGNAL_COMPLETE)
        def completed(_signal, _task, *args, **kwargs) -> None:
            count[0] += 1
            if count[0] >= n:
                done.set()

        consumer.start()
        done.wait()

    def latency(self, samples: int, gap: float) -> list[float]:
        self.reset()
        path = self.tmp / "stamps.txt"
        path.unlink(missing_ok=True)
        self.huey.storage.close()
        pid = common.fork(lambda: self._consume(None), self.log)
        try:
            return common.sample_latency(lambda i: self.stamp(str(path), i), path, samples, gap)
        finally:
            common.stop(pid, timeout=5)
            self.reset()
