"""One `djctl top` refresh (the data queries) with a million jobs in the table (issue 4 #4).

Method: a fresh database per kind is loaded, in one statement, with ``--rows`` jobs spread
over five queues and three priorities: 70 % ready, 20 % scheduled, 2 % running (locked by
~1000 workers, each holding ~20 claims: a busy fleet), 8 % failed with a traceback. Four
of those workers are registered in djctl_processes, as a supervisor would register them. Then DatabaseSource.snapshot() — everything one
refresh reads: queue depth, the oldest ready job per group, the newest 100 failed jobs,
the processes and their current jobs — is timed ``--repeat`` times after two warm-up
runs, with no filter and with a text filter (which must count matching failed rows).
No supervisor runs, so the control socket answers "not running" at once, as on a host
without one. Goal: 200 ms per refresh.

    python -m bench.console [--databases sqlite,postgresql] [--rows 1000000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import Engine, bindparam, text

from djctl import api, config
from djctl.queue import stats
from djctl.queue.schema import Timestamp

from . import common

KINDS = ("sqlite", "postgresql")
GOAL_MS = 200.0
HOST = "bench"
PIDS = (1000, 1001, 1002, 1003)
TRACEBACK = "\nTraceback (most recent call last):\n" + '  File "/srv/app/jobs.py", line 12, in perform\n' * 8 + \
    "RuntimeError: boom"

# g % 100: 0-69 ready, 70-89 scheduled, 90-91 running, 92-99 failed.
_VALUES = (
    "g % 3 * 5, CASE WHEN g % 100 >= 92 THEN 25 ELSE 0 END, "
    "'{\"job\":\"shop.jobs:ResizePhoto\",\"state\":{\"photo_id\":' || g || '}}', "
    "CASE WHEN g % 100 >= 92 THEN 'RuntimeError: boom ' || g || :tb END, "
    "CASE WHEN g % 100 BETWEEN 70 AND 89 THEN :future ELSE :past END, "
    "CASE WHEN g % 100 IN (90, 91) THEN :now END, "
    "CASE WHEN g % 100 IN (90, 91) THEN 'host:bench pid:' || (1000 + (g / 100) % 997) END, "
    "CASE WHEN g % 100 >= 92 THEN :past END, "
    "CASE g % 5 WHEN 0 THEN NULL WHEN 1 THEN 'mail' WHEN 2 THEN 'media' WHEN 3 THEN 'reports' "
    "ELSE 'maintenance' END, :past, :past"
)
_COLUMNS = "priority, attempts, handler, last_error, run_at, locked_at, locked_by, failed_at, queue, created_at, updated_at"


def fill(engine: Engine, rows: int) -> None:
    """Load ``rows`` jobs in one statement and register the processes holding the running ones."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    if engine.dialect.name == "postgresql":
        sql = f"INSERT INTO delayed_jobs ({_COLUMNS}) SELECT {_VALUES} FROM generate_series(1, {rows}) AS s(g)"
    else:
        sql = (f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {rows}) "
               f"INSERT INTO delayed_jobs ({_COLUMNS}) SELECT {_VALUES} FROM s")
    stmt = text(sql).bindparams(*(bindparam(n, type_=Timestamp) for n in ("now", "past", "future")))
    with engine.begin() as conn:
        conn.execute(stmt, {"now": now, "past": now - timedelta(hours=1), "future": now + timedelta(days=1),
                            "tb": TRACEBACK})
        for i, pid in enumerate(PIDS, 1):
            conn.execute(text(
                "INSERT INTO djctl_processes (host, pid, name, type, supervisor_pid, state, command, "
                "started_at, heartbeat_at) VALUES (:host, :pid, :name, 'worker', 100, 'up', 'djctl work', :t, :t)"
            ).bindparams(bindparam("t", type_=Timestamp)), {"host": HOST, "pid": pid, "name": f"worker.{i}", "t": now})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # What autovacuum / a long-lived database would have done by now; the planners need it.
        conn.exec_driver_sql("VACUUM ANALYZE delayed_jobs" if engine.dialect.name == "postgresql" else "ANALYZE")


def time_refresh(source, flt, repeat: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of ``repeat`` refreshes. On SQLite every query runs in
    this process, so its CPU time is the work a refresh costs, which other load on the
    machine does not inflate as it does wall time (PostgreSQL's work happens in server
    processes, partly in parallel workers: only wall time is meaningful there)."""
    for _ in range(2):
        source.snapshot(flt)
    wall, cpu = [], []
    for _ in range(repeat):
        started, own = time.perf_counter(), time.process_time()
        source.snapshot(flt)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - own) * 1000)
    return wall, cpu


def time_parts(engine: Engine, repeat: int) -> dict[str, float]:
    """Median ms of each query of a refresh, for finding the one to blame."""
    now = api.utc_naive(api.now())
    parts: dict[str, list[float]] = {"queue_depth": [], "oldest_ready": [], "failed_jobs": []}
    with engine.connect().execution_options(sqlite_read=True) as conn:
        for _ in range(repeat):
            t0 = time.perf_counter()
            depth = stats.queue_depth(conn, now)
            t1 = time.perf_counter()
            stats.oldest_ready(conn, now, [(d.queue, d.priority) for d in depth if d.ready])
            t2 = time.perf_counter()
            stats.failed_jobs(conn, [(d.queue, d.priority) for d in depth if d.failed])
            t3 = time.perf_counter()
            for name, ms in zip(parts, ((t1 - t0), (t2 - t1), (t3 - t2))):
                parts[name].append(ms * 1000)
    return {k: statistics.median(v) for k, v in parts.items()}


def measure(kind: str, url: str, rows: int, repeat: int, state_dir: Path) -> dict:
    from djctl.tui.sources import DatabaseSource, JobFilter

    settings = config.Settings(database_url=url, state_dir=state_dir)
    config.set_current(settings)
    engine = api.engine(url)
    started = time.perf_counter()
    fill(engine, rows)
    print(f"{kind}: loaded {rows:,} jobs in {time.perf_counter() - started:.1f}s", flush=True)
    source = DatabaseSource(settings, host="console-bench")  # the processes are another host's
    snap = source.snapshot(JobFilter())
    assert sum(q.ready + q.scheduled + q.running + q.failed for q in snap.queues) == rows
    assert len(snap.failed) == 100 and all(p.job for p in snap.processes), "the refresh did not see the data"
    plain, plain_cpu = time_refresh(source, JobFilter(), repeat)
    text_filter, _ = time_refresh(source, JobFilter(text="99999"), max(3, repeat // 4))
    return {"rows": rows, "refresh_ms": summary(plain), "refresh_cpu_ms": summary(plain_cpu),
            "text_filter_ms": summary(text_filter),
            "parts_median_ms": time_parts(engine, repeat)}


def summary(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "p95": common.percentile(values, 95),
            "max": max(values), "runs": len(values)}


def render(results: dict) -> str:
    rows = []
    for kind, r in results.items():
        ms = r["refresh_ms"]
        parts = ", ".join(f"{k} {v:.0f}" for k, v in r["parts_median_ms"].items())
        cpu = r["refresh_cpu_ms"]
        rows.append([kind, f"{r['rows']:,}", f"{ms['min']:.0f}", f"{ms['median']:.0f}", f"{ms['p95']:.0f}",
                     f"{cpu['median']:.0f}" if kind == "sqlite" else "-", "yes" if ms["median"] <= GOAL_MS else "NO",
                     f"{r['text_filter_ms']['median']:.0f}", parts])
    return common.table(["database", "jobs", "min ms", "median ms", "p95 ms", "cpu ms", f"<= {GOAL_MS:.0f} ms",
                         "text filter ms", "median ms per query (wall)"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.split("\n\n")[0])
    p.add_argument("--databases", default=",".join(KINDS), help="comma-separated: sqlite,postgresql")
    p.add_argument("--rows", type=int, default=1_000_000, help="jobs in the table")
    p.add_argument("--repeat", type=int, default=20, help="timed refreshes")
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
                url = dbs.sqlite("console") if kind == "sqlite" else dbs.postgresql("console")
                out["results"][kind] = measure(kind, url, args.rows, args.repeat, Path(tmp) / kind)
        finally:
            dbs.drop_all()
    print()
    print(quiet)
    print(f"after: load {__import__('os').getloadavg()[0]:.2f}, CPU pressure {common.cpu_pressure()}%")
    print(render(out["results"]))
    print(f"\nresults: {common.save('console', out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
