"""djctl side by side with its Python peers, in one command, with the targets of issue 20.

    python -m bench.peers [--jobs 5000] [--batch 1000] [--samples 200] [--gap 0.02] [--repeat 1]
                          [--wait-quiet SECONDS]

Method (the same for every queue; each gets its own fresh database or SQLite file):
- The job: a no-op (bench.jobs.noop); djctl runs it as a job class, pgqueuer and
  procrastinate as an ``async def`` task, huey as a plain task.
- Enqueue one by one: ``--jobs`` single enqueues, each its own committed transaction
  (djctl.enqueue; pgqueuer Queries.enqueue of one job; procrastinate defer_async; huey
  calling the task), as a web request makes; jobs/s = jobs / wall time.
- Bulk enqueue: ``--jobs`` jobs through each library's bulk call (djctl.enqueue_many,
  pgqueuer Queries.enqueue with lists, procrastinate batch_defer_async), ``--batch`` per
  call; jobs/s = jobs / wall time.
- Processing: ``--jobs`` jobs are queued first; then 1 or 4 worker processes are forked
  from this already-imported process (no interpreter start-up in the figure) and run in
  "drain" mode (djctl: work_off until nothing is ready, as ``djctl workoff``; pgqueuer:
  QueueExecutionMode.drain, batch 10; procrastinate: wait=False; huey: exits once its
  consumer signalled ``--jobs`` completions). jobs/s = jobs / (first fork -> last exit).
  Afterwards the queue is checked to be empty (every job done).
- Latency: one idle worker (djctl: a real ``djctl work`` process with the default
  sleep_delay, waking on LISTEN/NOTIFY or the local doorbell); ``--samples`` stamp jobs
  ``--gap`` s apart; each job writes time.time() when it starts; latency = that minus
  time.time() read just before the enqueue call. p50 and p99 in ms.
- Raw database limit (bench/raw.py): a bare loop on djctl's own schema, one transaction
  per round: delete the previous 10 rows and claim the next 10 (UPDATE ... FOR UPDATE
  SKIP LOCKED ... RETURNING; BEGIN IMMEDIATE on SQLite), durability on per commit.
  The 1-row variant is shown too.
- Throughput figures are the best of ``--repeat`` runs; the repeats go round all queues in
  turn, so a busy spell on the machine hits them alike.
Ratios compare djctl with the best peer of the same row; "met" checks issue 20's target
(and "of raw" puts djctl's processing beside the raw loop of the same run).
Results also go to bench/results/peers-<time>.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    __package__ = "bench"

import argparse
import os
import tempfile
import traceback

from . import common
from .djctl_side import Djctl
from .huey_peer import Huey
from .pg_peers import PgQueuer, Procrastinate
from .raw import RawLoop

COLUMNS = ["djctl", "pgqueuer", "procrastinate", "huey", "raw"]
# (row key, label, target ratio vs best peer or absolute latency targets)
# Issue 20's targets.
TARGETS = {
    "pg_enqueue_one": 1.2,
    "pg_process_1": 1.5,
    "pg_process_4": 1.5,
    "pg_bulk": 1.5,
    "sqlite_enqueue_one": 1.2,
    "sqlite_process_1": 3.0,
    "sqlite_process_4": 3.0,
}
LATENCY_TARGET = (2.0, 5.0)  # p50, p99 in ms


def measure(args: argparse.Namespace, tmp: Path) -> dict:
    out: dict = {"jobs": args.jobs, "batch": args.batch, "samples": args.samples, "gap": args.gap,
                 "repeat": args.repeat, "machine": common.machine(), "rows": {}}
    rows = out["rows"]
    dbs = common.Databases(tmp)

    def record(key: str, system: str, fn) -> None:
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - one failed measure must not lose the others
            traceback.print_exc()
            value = f"error: {e}"
        print(f"  {key:<22} {system:<14} {_fmt(value)}", flush=True)
        old = rows.setdefault(key, {}).get(system)
        if isinstance(value, float) and isinstance(old, float):
            value = max(value, old)  # the best of the repeats: the least disturbed
        rows[key][system] = value

    def rate(seconds: float) -> float:
        return args.jobs / seconds

    try:
        # Repeats go round all queues in turn, so a busy spell on the machine hits them alike.
        if common.server_up("postgresql"):
            print("PostgreSQL", flush=True)
            systems = [Djctl(dbs.postgresql("djctl"), tmp, "pg-djctl"),
                       PgQueuer(dbs.postgresql("pgqueuer"), tmp),
                       Procrastinate(dbs.postgresql("procrastinate"), tmp)]
            raw = RawLoop(systems[0].engine, tmp)
            for _ in range(args.repeat):
                for s in systems:
                    record("pg_enqueue_one", s.name, lambda: rate(s.enqueue_one(args.jobs)))
                for s in systems:
                    record("pg_bulk", s.name, lambda: rate(s.enqueue_bulk(args.jobs, args.batch)))
                for workers in (1, 4):
                    for s in systems:
                        record(f"pg_process_{workers}", s.name, lambda: rate(s.process(workers, args.jobs)))
                    record(f"pg_process_{workers}", "raw", lambda: rate(raw.process(workers, args.jobs)))
                record("pg_raw_1row", "raw", lambda: rate(raw.process(1, args.jobs, batch=1)))
            for s in systems:
                record("pg_latency", s.name, lambda: common.latency_summary(s.latency(args.samples, args.gap)))
            for s in systems[1:]:
                s.close()
        else:
            print("PostgreSQL at 127.0.0.1:5432 does not answer: skipped", flush=True)

        print("SQLite", flush=True)
        dj = Djctl(dbs.sqlite("djctl"), tmp, "sqlite-djctl")
        huey = Huey(tmp)
        raw = RawLoop(dj.engine, tmp)
        for _ in range(args.repeat):
            for s in (dj, huey):
                record("sqlite_enqueue_one", s.name, lambda: rate(s.enqueue_one(args.jobs)))
                record("sqlite_process_1", s.name, lambda: rate(s.process(1, args.jobs)))
                record("sqlite_process_4", s.name, lambda: rate(s.process(4, args.jobs)))
            record("sqlite_process_1", "raw", lambda: rate(raw.process(1, args.jobs)))
            record("sqlite_raw_1row", "raw", lambda: rate(raw.process(1, args.jobs, batch=1)))
        for s in (dj, huey):
            record("sqlite_latency", s.name, lambda: common.latency_summary(s.latency(args.samples, args.gap)))
        huey.close()
    finally:
        dbs.drop_all()
    return out


LABELS = [
    ("pg_enqueue_one", "PG enqueue one by one (jobs/s)"),
    ("pg_process_1", "PG process, 1 worker (jobs/s)"),
    ("pg_process_4", "PG process, 4 workers (jobs/s)"),
    ("pg_bulk", "PG bulk enqueue (jobs/s)"),
    ("pg_latency", "PG enqueue->start p50/p99 (ms)"),
    ("pg_raw_1row", "PG raw loop, 1 row per claim"),
    ("sqlite_process_1", "SQLite process, 1 worker (jobs/s)"),
    ("sqlite_process_4", "SQLite process, 4 workers (jobs/s)"),
    ("sqlite_enqueue_one", "SQLite enqueue one by one (jobs/s)"),
    ("sqlite_latency", "SQLite enqueue->start p50/p99 (ms)"),
    ("sqlite_raw_1row", "SQLite raw loop, 1 row per claim"),
]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return f"{value['p50_ms']:.1f}/{value['p99_ms']:.1f}"
    if isinstance(value, (int, float)):
        return f"{value:,.0f}"
    return "ERR"


def verdicts(rows: dict) -> dict:
    """For each target of issue 7: djctl's figure, the best peer's, the ratio, and whether it is met."""
    out = {}
    for key, target in TARGETS.items():
        row = rows.get(key, {})
        mine = row.get("djctl")
        peers = {k: v for k, v in row.items() if k not in ("djctl", "raw") and isinstance(v, (int, float))}
        if not isinstance(mine, (int, float)) or not peers:
            continue
        best = max(peers, key=peers.get)
        ratio = mine / peers[best]
        raw = row.get("raw")
        out[key] = {"djctl": mine, "best_peer": best, "peer": peers[best], "ratio": ratio, "target": target,
                    "met": ratio >= target, "of_raw": mine / raw if isinstance(raw, (int, float)) else None}
    for key in ("pg_latency", "sqlite_latency"):
        mine = rows.get(key, {}).get("djctl")
        if isinstance(mine, dict):
            p50, p99 = LATENCY_TARGET
            out[key] = {"djctl": mine, "target": f"p50<={p50:g}ms p99<={p99:g}ms",
                        "met": mine["p50_ms"] <= p50 and mine["p99_ms"] <= p99}
    return out


def render(out: dict) -> str:
    rows = out["rows"]
    cols = [c for c in COLUMNS if any(c in rows.get(k, {}) for k, _ in LABELS)]
    verdict = out["verdicts"]
    body = []
    for key, label in LABELS:
        if key not in rows:
            continue
        v = verdict.get(key, {})
        ratio = f"{v['ratio']:.2f}x {v['best_peer']}" if "ratio" in v else ""
        if v.get("of_raw") is not None:
            ratio += f", {v['of_raw']:.0%} of raw"
        target = (f">={v['target']}x" if isinstance(v.get("target"), float) else
                  ("<=%g/<=%g" % LATENCY_TARGET if "target" in v else ""))
        met = "" if "met" not in v else ("yes" if v["met"] else "NO")
        body.append([label, *(_fmt(rows[key].get(c)) for c in cols), ratio, target, met])
    header = ["measure", *cols, "djctl/best peer", "target", "met"]
    return common.table(header, body)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=5000, help="jobs per processing and bulk-enqueue run")
    p.add_argument("--batch", type=int, default=1000, help="jobs per bulk-enqueue call")
    p.add_argument("--samples", type=int, default=200, help="latency samples per queue")
    p.add_argument("--gap", type=float, default=0.02, help="seconds between latency samples")
    p.add_argument("--repeat", type=int, default=1, help="best of N for throughput figures")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="first wait up to this long for other processes to leave the CPUs alone")
    args = p.parse_args(argv)
    quiet = common.wait_quiet(args.wait_quiet)
    print(quiet, flush=True)
    source = common.djctl_source()
    with tempfile.TemporaryDirectory(prefix="djctl-bench-") as tmp:
        out = measure(args, Path(tmp))
    out["machine_after"] = common.machine()
    out["verdicts"] = verdicts(out["rows"])
    print()
    print(quiet, "| djctl source", source)
    if common.djctl_source() != source:
        print("WARNING: djctl's sources changed during the run; the figures mix two versions")
    print(f"after: load {os.getloadavg()[0]:.2f}, CPU pressure {common.cpu_pressure()}%")
    print(render(out))
    print(f"\nresults: {common.save('peers', out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
