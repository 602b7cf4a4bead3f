"""djctl under measurement: enqueue, processing by forked workers, latency, claim cost, stats.

Every method leaves the queue empty behind it (or says what it leaves).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


import djctl
from djctl import config
from djctl.queue import claims as claim
from djctl.queue import engines as store
from djctl.queue.stats import queue_depth
from djctl.worker import identity

from . import common, fill
from .jobs import Noop, Stamp


class Djctl:
    """djctl on one database; ``tmp`` holds logs, stamps and the worker's state dir."""

    name = "djctl"

    def __init__(self, url: str, tmp: Path, label: str = "djctl"):
        self.url = url
        self.tmp = tmp / label
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.log = self.tmp / "workers.log"
        self._use()
        self.engine = djctl.engine()
        self.dialect = self.engine.dialect.name

    def _use(self) -> None:
        djctl.configure(database_url=self.url, app="bench.jobs", state_dir=str(self.tmp / ".djctl"))

    def reset(self) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM delayed_jobs")

    def remaining(self) -> int:
        with self.engine.connect().execution_options(sqlite_read=True) as conn:
            return conn.exec_driver_sql("SELECT COUNT(*) FROM delayed_jobs").scalar_one()

    # -- enqueue ---------------------------------------------------------------

    def enqueue_one(self, n: int) -> float:
        """Seconds for ``n`` calls of djctl.enqueue (one transaction each)."""
        self._use()
        started = time.perf_counter()
        for _ in range(n):
            djctl.enqueue(Noop())
        elapsed = time.perf_counter() - started
        self.reset()
        return elapsed

    def enqueue_bulk(self, n: int, batch: int) -> float:
        """Seconds for ``n`` jobs through djctl.enqueue_many, ``batch`` per call."""
        self._use()
        started = time.perf_counter()
        self.fill(n, batch)
        elapsed = time.perf_counter() - started
        self.reset()
        return elapsed

    def fill(self, n: int, batch: int = 1000) -> None:
        self._use()
        for start in range(0, n, batch):
            djctl.enqueue_many(Noop() for _ in range(min(batch, n - start)))

    # -- processing ---------------------------------------------------------------

    def process(self, workers: int, n: int, cli: bool = False) -> float:
        """Seconds from starting ``workers`` workers until all exit with ``n`` no-op jobs done.

        Workers are forked from this (already imported) process and run ``work_off``
        until nothing is ready, as ``djctl workoff`` does; with ``cli``, they are real
        ``djctl workoff`` processes and the time includes interpreter start-up.
        """
        self.reset()
        self.fill(n)
        self.engine.dispose()
        if cli:
            elapsed = self._process_cli(workers)
        else:
            elapsed = common.run_workers(workers, _work_off, self.log)
        left = self.remaining()
        if left:
            raise RuntimeError(f"djctl: {left} jobs left after workoff; see {self.log}")
        return elapsed

    def _process_cli(self, workers: int) -> float:
        env = common.bench_env(self.url, self.tmp / ".djctl")
        started = time.perf_counter()
        with open(self.log, "ab") as out:
            procs = [subprocess.Popen([sys.executable, "-m", "djctl", "workoff"], env=env, cwd=self.tmp,
                                      stdout=out, stderr=subprocess.STDOUT) for _ in range(workers)]
            codes = [p.wait(timeout=600) for p in procs]
        elapsed = time.perf_counter() - started
        if any(codes):
            raise RuntimeError(f"djctl workoff exited {codes}; see {self.log}")
        return elapsed

    # -- latency -------------------------------------------------------------------

    def latency(self, samples: int, gap: float) -> list[float]:
        """Enqueue->start latencies (ms) with one idle ``djctl work`` process (default sleep_delay)."""
        self._use()
        self.reset()
        path = self.tmp / "stamps.txt"
        path.unlink(missing_ok=True)
        env = common.bench_env(self.url, self.tmp / ".djctl")
        with open(self.log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "djctl", "work"], env=env, cwd=self.tmp,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            return common.sample_latency(lambda i: djctl.enqueue(Stamp(str(path), i)), path, samples, gap)
        finally:
            common.stop(proc.pid)
            proc.wait()
            self.reset()

    # -- claim cost and stats ---------------------------------------------------------

    def claim_round_ms(self, rounds: int) -> float:
        """Median ms per worker round: one transaction that deletes the 10 jobs claimed in the
        previous round and claims the next 10, with djctl's own SQL (djctl.queue.claims.Claims; one
        statement where the worker uses one)."""
        fill.insert_rows(self.engine, (rounds + 10) * 10, "ready")
        claims = claim.Claims(self.dialect, identity.format("bench", os.getpid()))
        held: list[int] = []
        times = []
        with self.engine.connect() as conn:
            for r in range(rounds + 10):
                started = time.perf_counter()
                with conn.begin():
                    held = [j.id for j in claims.claim(conn, 10, _utcnow(), complete=held)]
                if r >= 10:  # the first rounds warm caches and prepared statements
                    times.append(time.perf_counter() - started)
                if len(held) != 10:
                    raise RuntimeError(f"claim returned {len(held)} jobs, expected 10")
            with conn.begin():
                claims.complete(conn, held)
        return common.percentile(times, 50) * 1000

    def load_dead_rows(self, n: int) -> float:
        """Seconds to bulk-load ``n`` failed and scheduled rows."""
        started = time.perf_counter()
        fill.insert_rows(self.engine, n, "dead")
        return time.perf_counter() - started

    def stats_ms(self, runs: int = 5) -> tuple[float, float]:
        """(best ms of the depth query in this process, best ms of a whole ``djctl stats`` command)."""
        def query() -> float:
            started = time.perf_counter()
            with self.engine.connect().execution_options(sqlite_read=True) as conn:
                queue_depth(conn, _utcnow())
            return time.perf_counter() - started

        query()
        in_process = common.best_of(runs, query) * 1000
        env = common.bench_env(self.url, self.tmp / ".djctl")

        def command() -> float:
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "djctl", "stats"], env=env, cwd=self.tmp, check=True,
                           stdout=subprocess.DEVNULL)
            return time.perf_counter() - started

        command()
        return in_process, common.best_of(max(2, runs // 2), command) * 1000


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _work_off() -> None:
    """A forked worker: what ``djctl workoff`` does once its imports are done."""
    store.dispose_inherited()
    worker = djctl.Worker(settings=config.current())
    while True:
        ok, failed = worker.work_off(num=10_000)
        if failed:
            raise RuntimeError(f"{failed} no-op jobs failed")
        if ok == 0:
            return
