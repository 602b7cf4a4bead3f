"""Coroutine jobs beside plain ones (issue 13), djctl on SQLite with one worker.

    python -m bench.async_jobs [--jobs 2000] [--repeat 3] [--samples 50] [--gap 0.05]

Throughput: ``--jobs`` no-op jobs put on the queue with enqueue_many, then one worker
forked from this process works them off (as ``djctl workoff`` does); the figure is jobs
per second, best of ``--repeat``. Once for ``Noop`` (a plain perform), once for
``AsyncNoop`` (``async def perform``, awaited on the executor's event loop).
Latency: one idle ``djctl work`` process; ``--samples`` async jobs, ``--gap`` seconds
apart, each stamps the wall clock as its body starts; p50/p99 of stamp minus enqueue.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import djctl

from . import common
from .djctl_side import _work_off
from .jobs import Noop, stamp

APP = ("bench.jobs", "bench.async_jobs")


@dataclass
class AsyncNoop:
    async def perform(self) -> None:
        await asyncio.sleep(0)


@dataclass
class AsyncStamp:
    path: str
    i: int

    async def perform(self) -> None:
        stamp(self.path, self.i)
        await asyncio.sleep(0)


def throughput(url: str, job: type, n: int, log: Path) -> float:
    """Jobs per second for one worker working off ``n`` jobs of ``job``."""
    engine = djctl.engine()
    for start in range(0, n, 1000):
        djctl.enqueue_many(job() for _ in range(min(1000, n - start)))
    engine.dispose()
    elapsed = common.run_workers(1, _work_off, log)
    with engine.connect().execution_options(sqlite_read=True) as conn:
        left = conn.exec_driver_sql("SELECT COUNT(*) FROM delayed_jobs").scalar_one()
    if left:
        raise RuntimeError(f"{left} {job.__name__} jobs left after workoff; see {log}")
    return n / elapsed


def latency(url: str, tmp: Path, samples: int, gap: float) -> dict:
    path = tmp / "stamps.txt"
    env = common.bench_env(url, tmp / ".djctl")
    env["DJ_APP"] = ",".join(APP)
    with open(tmp / "work.log", "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "djctl", "work"], env=env, cwd=tmp,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        job = _jobs().AsyncStamp
        values = common.sample_latency(lambda i: djctl.enqueue(job(str(path), i)), path, samples, gap)
    finally:
        common.stop(proc.pid)
        proc.wait()
    return common.latency_summary(values)


def _jobs():
    # Run as ``python -m`` this module is __main__, a name no worker can import the jobs by.
    import bench.async_jobs

    return bench.async_jobs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--gap", type=float, default=0.05)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="djctl-bench-async-") as tmp_name:
        tmp = Path(tmp_name)
        url = common.Databases(tmp).sqlite("async_jobs")
        djctl.configure(database_url=url, app=list(APP), state_dir=str(tmp / ".djctl"))
        rates = {}
        for job in (Noop, _jobs().AsyncNoop):
            rates[job.__name__] = max(throughput(url, job, args.jobs, tmp / "workers.log")
                                      for _ in range(args.repeat))
        started = time.time()
        lat = latency(url, tmp, args.samples, args.gap)
    rows = [[name, f"{rate:,.0f}"] for name, rate in rates.items()]
    print(common.table(["SQLite, 1 worker, no-op jobs", "jobs/s"], rows))
    print(f"AsyncNoop / Noop: {rates['AsyncNoop'] / rates['Noop']:.2f}")
    print(f"async job enqueue->start (idle djctl work): p50 {lat['p50_ms']:.1f} ms, "
          f"p99 {lat['p99_ms']:.1f} ms over {lat['samples']} samples")
    saved = common.save("async_jobs", {"jobs": args.jobs, "repeat": args.repeat, "throughput": rates,
                                       "latency": lat, "started": started})
    print(f"(written to {saved.relative_to(common.REPO)})")


if __name__ == "__main__":
    main()
