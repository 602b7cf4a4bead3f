"""djctl alone: enqueue, processing, latency, stats and claim cost on SQLite, PostgreSQL, MariaDB.

    python -m bench.queue [--databases sqlite,postgresql,mysql] [--jobs 5000] [--one 2000]
                          [--batch 1000] [--samples 200] [--gap 0.02] [--rows 1000000]
                          [--rounds 300] [--repeat 1] [--cli] [--wait-quiet SECONDS]

Method (each database a fresh one: a SQLite file in a temp dir, or a new database on the
local server, dropped afterwards):
- enqueue one by one: ``--one`` calls of djctl.enqueue(Noop()), each its own transaction.
- enqueue_many: ``--jobs`` jobs through djctl.enqueue_many, ``--batch`` per call.
- processing: ``--jobs`` no-op jobs queued first; then 1 or 4 workers are forked from this
  already-imported process, each running Worker.work_off until nothing is ready (what
  ``djctl workoff`` does); jobs/s = jobs / (first fork -> last worker exited), the queue
  then checked empty. ``--cli`` runs real ``djctl workoff`` processes instead (interpreter
  start-up then counts).
- latency: one idle ``djctl work`` process (default sleep_delay: wake-ups do the work);
  ``--samples`` jobs ``--gap`` s apart, each writing time.time() when it starts; latency =
  that minus time.time() read just before djctl.enqueue. p50/p99 in ms.
- claim cost: median ms of a worker round — one transaction deleting the 10 jobs claimed in
  the previous round and claiming the next 10 with djctl's own SQL (djctl.queue.claims.Claims) —
  first with only ready jobs in the table, then again after ``--rows`` failed and scheduled
  rows were bulk-loaded (one INSERT ... SELECT over generate_series / a recursive CTE /
  MariaDB's seq table; VACUUM ANALYZE after it on PostgreSQL, as autovacuum would).
- stats: with those ``--rows`` rows in the table, the best of 5 runs of the depth query in
  this process, and the best of 2 runs of a whole ``djctl stats`` command (start-up included).
Throughput figures are the best of ``--repeat`` runs. A compact table is printed; everything also goes to bench/results/queue-<time>.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a file: keep bench/ off sys.path, or this module would shadow the stdlib's queue.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    __package__ = "bench"

import argparse
import os
import tempfile
import traceback

from . import common
from .djctl_side import Djctl

KINDS = ("sqlite", "postgresql", "mysql")


def measure_one(kind: str, args: argparse.Namespace, dbs: common.Databases, tmp: Path) -> dict:
    url = getattr(dbs, kind)("queue")
    d = Djctl(url, tmp, f"queue-{kind}")
    out: dict = {}

    def record(key: str, fn) -> None:
        try:
            out[key] = fn()
        except Exception as e:  # noqa: BLE001 - one failed measure must not lose the others
            traceback.print_exc()
            out[key] = f"error: {e}"
        print(f"  {kind:<10} {key:<18} {_fmt(out[key])}", flush=True)

    def best(n: int, seconds) -> float:
        return n / min(seconds() for _ in range(args.repeat))

    record("enqueue_one", lambda: best(args.one, lambda: d.enqueue_one(args.one)))
    record("enqueue_many", lambda: best(args.jobs, lambda: d.enqueue_bulk(args.jobs, args.batch)))
    record("process_1", lambda: best(args.jobs, lambda: d.process(1, args.jobs, cli=args.cli)))
    record("process_4", lambda: best(args.jobs, lambda: d.process(4, args.jobs, cli=args.cli)))
    record("latency", lambda: common.latency_summary(d.latency(args.samples, args.gap)))
    record("claim_empty_ms", lambda: d.claim_round_ms(args.rounds))
    record("load_rows_s", lambda: d.load_dead_rows(args.rows))
    record("claim_full_ms", lambda: d.claim_round_ms(args.rounds))
    record("stats_ms", lambda: dict(zip(("query", "command"), d.stats_ms())))
    d.engine.dispose()
    return out


ROWS = [
    ("enqueue_one", "enqueue one by one (jobs/s)"),
    ("enqueue_many", "enqueue_many bulk (jobs/s)"),
    ("process_1", "process no-op, 1 worker (jobs/s)"),
    ("process_4", "process no-op, 4 workers (jobs/s)"),
    ("latency", "enqueue->start p50/p99 (ms)"),
    ("claim_empty_ms", "claim round of 10, empty (ms)"),
    ("claim_full_ms", "claim round of 10, +N dead rows (ms)"),
    ("claim_ratio", "  full/empty (target <= 1.5)"),
    ("stats_ms", "stats, N rows: query / command (ms)"),
    ("load_rows_s", "bulk-load N dead rows (s)"),
]


def _fmt(value) -> str:
    if isinstance(value, dict) and "p50_ms" in value:
        return f"{value['p50_ms']:.1f}/{value['p99_ms']:.1f}"
    if isinstance(value, dict):
        return f"{value['query']:.0f}/{value['command']:.0f}"
    if isinstance(value, float) and value < 100:
        return f"{value:.2f}"
    if isinstance(value, (int, float)):
        return f"{value:,.0f}"
    return "-" if value is None else "ERR"


def render(results: dict, rows: int) -> str:
    kinds = list(results)
    for r in results.values():
        full, empty = r.get("claim_full_ms"), r.get("claim_empty_ms")
        if isinstance(full, float) and isinstance(empty, float):
            r["claim_ratio"] = full / empty
    body = [[label.replace("N", f"{rows:,}") if "N " in label else label,
             *(_fmt(results[k].get(key)) for k in kinds)] for key, label in ROWS]
    return common.table(["measure", *kinds], body)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.queue", description=__doc__.split("\n\n")[0])
    p.add_argument("--databases", default=",".join(KINDS), help="comma-separated: sqlite,postgresql,mysql")
    p.add_argument("--jobs", type=int, default=5000, help="jobs per processing and enqueue_many run")
    p.add_argument("--one", type=int, default=2000, help="jobs enqueued one by one")
    p.add_argument("--batch", type=int, default=1000, help="jobs per enqueue_many call")
    p.add_argument("--samples", type=int, default=200, help="latency samples")
    p.add_argument("--gap", type=float, default=0.02, help="seconds between latency samples")
    p.add_argument("--rows", type=int, default=1_000_000, help="failed+scheduled rows for stats and claim cost")
    p.add_argument("--rounds", type=int, default=300, help="claim rounds timed per claim-cost figure")
    p.add_argument("--repeat", type=int, default=1, help="best of N for the throughput figures")
    p.add_argument("--cli", action="store_true", help="process with real `djctl workoff` processes")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="first wait up to this long for other processes to leave the CPUs alone")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        p.error(f"unknown database kind(s) {', '.join(sorted(unknown))}; choose from {', '.join(KINDS)}")
    quiet = common.wait_quiet(args.wait_quiet)
    print(quiet, flush=True)
    source = common.djctl_source()
    out: dict = {"args": vars(args), "machine": common.machine(), "results": {}}
    with tempfile.TemporaryDirectory(prefix="djctl-bench-") as tmp:
        dbs = common.Databases(Path(tmp))
        try:
            for kind in kinds:
                if kind != "sqlite" and not common.server_up(kind):
                    print(f"{kind}: server not reachable on 127.0.0.1, skipped", flush=True)
                    continue
                out["results"][kind] = measure_one(kind, args, dbs, Path(tmp))
        finally:
            dbs.drop_all()
    out["machine_after"] = common.machine()
    print()
    print(quiet, "| djctl source", source)
    if common.djctl_source() != source:
        print("WARNING: djctl's sources changed during the run; the figures mix two versions")
    print(f"after: load {os.getloadavg()[0]:.2f}, CPU pressure {common.cpu_pressure()}%")
    print(render(out["results"], args.rows))
    print(f"\nresults: {common.save('queue', out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
