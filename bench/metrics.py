"""The cost of a Prometheus scrape of ``djctl up --metrics`` with 10,000,000 jobs in the
table, and whether scraping slows job processing (issue 19 #3).

Method: a fresh database per kind is loaded in one statement with ``--rows`` jobs spread as
bench.console spreads them (five queues, three priorities: 70 % ready, 20 % scheduled,
2 % running, 8 % failed), then ANALYZEd. Then:
- scrape: what one scrape of /metrics asks the database — djctl.daemon.metrics.read_queue:
  jobs by queue, priority and state, and the oldest ready job per queue, through
  djctl.queue.stats — timed ``--repeat`` times after two warm-up runs (wall ms; on SQLite
  also this process's CPU ms, since SQLite's work is done here). Also a whole exposition
  (prometheus_client.generate_latest over the supervisor's registry, with ``--events``
  job events counted first), wall ms. Goal: under 200 ms of database time.
- processing, A/B: ``--jobs`` no-op jobs are enqueued on a queue of their own and worked off
  by one forked worker (Worker.work_off until nothing is ready, as ``djctl workoff``),
  in turn: with no scraper; with a scraper thread collecting /metrics' queue numbers every
  ``--scrape-every`` seconds (1 s: 15 times Prometheus' usual interval) as the supervisor
  does, a reading serving the scrapes of the next ``--reuse`` seconds (the
  metrics_queue_reuse default, 10 s); and the same with every scrape counting the table
  (reuse 0). ``--rounds`` rounds of each, in one run; jobs/s of each and their ratio to
  no scraping (best and median).

    python -m bench.metrics [--databases sqlite,postgresql] [--rows 10000000] [--repeat 10]
                            [--jobs 5000] [--rounds 3] [--scrape-every 1.0] [--reuse 10]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from prometheus_client import generate_latest

import djctl
from djctl import api, config
from djctl.daemon.metrics import Metrics, QueueCollector, read_queue
from djctl.queue import engines as store

from . import common
from .console import fill
from .jobs import Noop

KINDS = ("sqlite", "postgresql")
GOAL_MS = 200.0
QUEUE = "scrape-ab"


def time_scrapes(engine, repeat: int, events: int) -> dict:
    for _ in range(2):
        read_queue(engine, "default")
    wall, cpu, seconds = [], [], []
    for _ in range(repeat):
        started, own = time.perf_counter(), time.process_time()
        sample = read_queue(engine, "default")
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - own) * 1000)
        seconds.append(sample.seconds * 1000)
    metrics = Metrics("bench")
    metrics.add(QueueCollector(lambda: read_queue(engine, "default"), timeout=60))
    stamp = datetime.now(timezone.utc).isoformat()
    for i in range(events):
        metrics.job_event(json.dumps({"event": "completed", "job_id": i, "class": f"shop.jobs:Job{i % 20}",
                                      "queue": ("mail", "media", "reports")[i % 3], "attempts": 1,
                                      "run_time": (i % 100) / 100, "waited": (i % 50) / 100, "ts": stamp}), "default")
    exposition = []
    size = 0
    for _ in range(max(3, repeat // 2)):
        started = time.perf_counter()
        size = len(generate_latest(metrics.registry))
        exposition.append((time.perf_counter() - started) * 1000)
    metrics.close()
    return {"read_queue_ms": summary(wall), "read_queue_cpu_ms": summary(cpu),
            "exposition_ms": summary(exposition), "exposition_bytes": size,
            "queues": len(sample.latency), "series": len(sample.jobs)}


def _work_off() -> None:
    store.dispose_inherited()
    worker = djctl.Worker(queues=[QUEUE], settings=config.current())
    while True:
        ok, failed = worker.work_off(num=10_000)
        if failed:
            raise RuntimeError(f"{failed} no-op jobs failed")
        if ok == 0:
            return


def _scrape(url: str, every: float, reuse: float, out: Path) -> None:
    """A forked scraper (the supervisor is a process of its own): collects /metrics' queue
    numbers every ``every`` seconds as the supervisor does for a scrape, a reading reused
    for ``reuse`` seconds, until SIGTERM; then writes how many scrapes and reads it made."""
    store.dispose_inherited()
    engine = api.engine(url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    reads = 0

    def read():
        nonlocal reads
        reads += 1
        return read_queue(engine, "default")

    collector = QueueCollector(read, timeout=60, reuse=reuse)
    scrapes = 0
    while not stop.is_set():
        list(collector.collect())
        scrapes += 1
        stop.wait(every)
    collector.close()
    out.write_text(json.dumps([scrapes, reads]))


def time_processing(engine, jobs: int, rounds: int, every: float, reuse: float, log: Path) -> dict:
    modes = {"without": None, "with": reuse, "with, no reuse": 0.0}
    runs: dict[str, list[float]] = {mode: [] for mode in modes}
    counted: dict[str, list[tuple[int, int]]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode, mode_reuse in modes.items():
            djctl.enqueue_many([Noop() for _ in range(jobs)], queue=QUEUE)
            engine.dispose()
            if mode_reuse is not None:
                # Forked before the worker, so that no thread of ours holds a lock across its fork.
                counts = log.with_name("scrapes.json")
                scraper = common.fork(lambda r=mode_reuse: _scrape(engine.url.render_as_string(hide_password=False), every, r, counts), log)
                elapsed = common.run_workers(1, _work_off, log)
                common.stop(scraper, timeout=120)
                counted[mode].append(tuple(json.loads(counts.read_text())))
            else:
                elapsed = common.run_workers(1, _work_off, log)
            runs[mode].append(jobs / elapsed)
            print(f"  {mode} scraping: {jobs / elapsed:,.0f} jobs/s {counted[mode][-1:]}", flush=True)
    base_best, base_median = max(runs["without"]), statistics.median(runs["without"])
    ratios = {mode: (max(runs[mode]) / base_best, statistics.median(runs[mode]) / base_median)
              for mode in modes if mode != "without"}
    return {"jobs_per_s": runs, "ratios_best_median": ratios, "scrapes_reads": counted}


def measure(kind: str, url: str, args: argparse.Namespace, tmp: Path) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    config.set_current(config.Settings(database_url=url, app=("bench.jobs",), state_dir=tmp / ".djctl"))
    djctl.configure(database_url=url, app="bench.jobs", state_dir=str(tmp / ".djctl"))
    engine = api.engine(url)
    started = time.perf_counter()
    fill(engine, args.rows)
    print(f"{kind}: loaded {args.rows:,} jobs in {time.perf_counter() - started:.0f}s", flush=True)
    out = {"rows": args.rows, "scrape": time_scrapes(engine, args.repeat, args.events)}
    print(f"{kind}: one scrape reads the queue in {out['scrape']['read_queue_ms']['median']:.0f} ms (median)",
          flush=True)
    out["processing"] = time_processing(engine, args.jobs, args.rounds, args.scrape_every, args.reuse,
                                        tmp / "workers.log")
    return out


def summary(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "p95": common.percentile(values, 95),
            "max": max(values), "runs": len(values)}


def render(results: dict) -> str:
    rows = []
    for kind, r in results.items():
        s, p = r["scrape"], r["processing"]
        rows.append([kind, f"{r['rows']:,}", f"{s['read_queue_ms']['min']:.0f}", f"{s['read_queue_ms']['median']:.0f}",
                     f"{s['read_queue_ms']['p95']:.0f}",
                     f"{s['read_queue_cpu_ms']['median']:.0f}" if kind == "sqlite" else "-",
                     "yes" if s["read_queue_ms"]["median"] <= GOAL_MS else "NO",
                     f"{s['exposition_ms']['median']:.0f}",
                     f"{max(p['jobs_per_s']['without']):,.0f}",
                     "{:.2f} / {:.2f}".format(*p["ratios_best_median"]["with"]),
                     "{:.2f} / {:.2f}".format(*p["ratios_best_median"]["with, no reuse"])])
    return common.table(["database", "jobs", "scrape min ms", "median ms", "p95 ms", "cpu ms",
                         f"<= {GOAL_MS:.0f} ms", "exposition ms", "jobs/s without",
                         "scraping: ratio best / median", "no reuse: ratio"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.metrics", description=__doc__.split("\n\n")[0])
    p.add_argument("--databases", default=",".join(KINDS), help="comma-separated: sqlite,postgresql")
    p.add_argument("--rows", type=int, default=10_000_000, help="jobs in the table")
    p.add_argument("--repeat", type=int, default=10, help="timed scrapes")
    p.add_argument("--events", type=int, default=10_000, help="job events counted before the exposition is timed")
    p.add_argument("--jobs", type=int, default=5000, help="no-op jobs per processing run")
    p.add_argument("--rounds", type=int, default=3, help="processing runs without and with scraping")
    p.add_argument("--scrape-every", type=float, default=1.0, help="seconds between scrapes")
    p.add_argument("--reuse", type=float, default=10.0, help="seconds a queue reading serves scrapes")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="first wait up to this long for other processes to leave the CPUs alone")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    if set(kinds) - set(KINDS):
        p.error(f"choose databases from {', '.join(KINDS)}")
    quiet = common.wait_quiet(args.wait_quiet)
    print(quiet, flush=True)
    out: dict = {"args": vars(args), "machine": common.machine(), "results": {}}
    with tempfile.TemporaryDirectory(prefix="djctl-bench-") as tmp:
        dbs = common.Databases(Path(tmp))
        try:
            for kind in kinds:
                if kind != "sqlite" and not common.server_up(kind):
                    print(f"{kind}: server not reachable on 127.0.0.1, skipped", flush=True)
                    continue
                url = dbs.sqlite("metrics") if kind == "sqlite" else dbs.postgresql("metrics")
                out["results"][kind] = measure(kind, url, args, Path(tmp) / kind)
        finally:
            dbs.drop_all()
    print()
    print(quiet)
    print(f"after: load {__import__('os').getloadavg()[0]:.2f}, CPU pressure {common.cpu_pressure()}%")
    print(render(out["results"]))
    print(f"\nresults: {common.save('metrics', out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
