"""How long ``djctl cancel`` takes to stop a running job (issue 17), on SQLite, PostgreSQL, MariaDB.

Method: one ``djctl work`` process (the real CLI); ``--samples`` times, a job that blocks in
select(2) is enqueued and, once its executor has written its pid, cancelled through
``djctl.queue.admin.cancel`` (what ``djctl cancel`` and the console's ``k`` call). Measured:
from the cancel's commit to the executor process being gone (polled every millisecond). The
worker must keep its pid throughout. Prints p50 and max; JSON to bench/results/cancel-<time>.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    __package__ = "bench"

import psutil

import djctl
from djctl.queue import admin

from . import common
from .jobs import Block

KINDS = ("sqlite", "postgresql", "mysql")


def _wait(predicate, timeout: float = 60.0, step: float = 0.001):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(step)
    return value


def measure(url: str, samples: int, tmp: Path) -> list[float]:
    tmp.mkdir(parents=True, exist_ok=True)
    djctl.configure(database_url=url, app="bench.jobs", state_dir=str(tmp / ".djctl"))
    engine = djctl.engine()
    env = common.bench_env(url, tmp / ".djctl")
    with open(tmp / "worker.log", "w") as log:
        worker = subprocess.Popen([sys.executable, "-m", "djctl", "work", "--sleep-delay", "0.2"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    took = []
    try:
        for i in range(samples):
            pid_file = tmp / f"pid{i}"
            job = djctl.enqueue(Block(str(pid_file)))
            pid = int(_wait(lambda f=pid_file: f.exists() and f.read_text()))
            executor = psutil.Process(pid)
            time.sleep(0.6)  # a job that has been running a while, as one being cancelled has
            if admin.cancel(engine, [job], "bench").refused:
                raise RuntimeError(f"job {job} was refused")
            started = time.perf_counter()
            _wait(lambda e=executor: not e.is_running() or e.status() == psutil.STATUS_ZOMBIE)
            took.append(time.perf_counter() - started)
            if worker.poll() is not None:
                raise RuntimeError("the worker exited")
    finally:
        worker.terminate()
        worker.wait(60)
    return took


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--databases", default=",".join(KINDS))
    args = p.parse_args(argv)
    results: dict = {"machine": common.machine()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dbs = common.Databases(Path(tmp))
        try:
            for kind in args.databases.split(","):
                if not common.server_up(kind):
                    print(f"{kind}: server not answering, skipped")
                    continue
                took = measure(getattr(dbs, kind)("cancel"), args.samples, Path(tmp) / kind)
                results[kind] = {"seconds": took, "p50": common.percentile(took, 50), "max": max(took)}
                rows.append([kind, f"{results[kind]['p50'] * 1000:.0f}", f"{max(took) * 1000:.0f}", str(len(took))])
        finally:
            dbs.drop_all()
    print(common.table(["cancel -> executor gone", "p50 ms", "max ms", "samples"], rows))
    print(f"saved {common.save('cancel', results)}")


if __name__ == "__main__":
    main()
