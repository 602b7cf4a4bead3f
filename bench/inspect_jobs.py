"""`djctl jobs`, `djctl show` and the console's search with a million jobs in the table (issue 17 #3).

Method: a fresh database per kind is loaded, in one statement, with ``--rows`` jobs spread
over five queues and three priorities: 70 % ready, 20 % scheduled, 2 % running, 8 % failed
with a traceback (the console benchmark's mix, bench/console.py). Then each query that
`djctl jobs`, `djctl show` and the console's `/` search and detail view run
(djctl.queue.lookup) is timed ``--repeat`` times after one warm-up run, from this process
over loopback: the median is the database's time per answer plus one round trip. Goal:
200 ms per answer.

    python -m bench.inspect_jobs [--databases sqlite,postgresql,mysql] [--rows 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import Connection, Engine, bindparam, text

from djctl import api, config
from djctl.queue import lookup
from djctl.queue.lookup import Search, State
from djctl.queue.schema import Timestamp

from . import common
from .console import TRACEBACK

KINDS = ("sqlite", "postgresql", "mysql")
GOAL_MS = 200.0
_COLUMNS = ("priority, attempts, handler, last_error, run_at, locked_at, locked_by, failed_at, queue, "
            "created_at, updated_at")


def _values(cat: Callable[..., str]) -> str:
    # g % 100: 0-69 ready, 70-89 scheduled, 90-91 running, 92-99 failed.
    return (
        "g % 3 * 5, CASE WHEN g % 100 >= 92 THEN 25 ELSE 0 END, "
        f"{cat(repr_json_head(), 'g', chr(39) + '}}' + chr(39))}, "
        f"CASE WHEN g % 100 >= 92 THEN {cat(chr(39) + 'RuntimeError: boom ' + chr(39), 'g', ':tb')} END, "
        "CASE WHEN g % 100 BETWEEN 70 AND 89 THEN :future ELSE :past END, "
        "CASE WHEN g % 100 IN (90, 91) THEN :now END, "
        f"CASE WHEN g % 100 IN (90, 91) THEN {cat(chr(39) + 'host:bench pid:' + chr(39), '(1000 + g % 997)')} END, "
        "CASE WHEN g % 100 >= 92 THEN :past END, "
        "CASE g % 5 WHEN 0 THEN 'default' WHEN 1 THEN 'mail' WHEN 2 THEN 'media' WHEN 3 THEN 'reports' "
        "ELSE 'maintenance' END, :past, :past"
    )


def repr_json_head() -> str:
    return "'{\"job\":\"shop.jobs:ResizePhoto\",\"state\":{\"photo_id\":'"


def fill(engine: Engine, rows: int) -> None:
    """Load ``rows`` jobs in one statement, then let the planner see them."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    name = engine.dialect.name
    if name == "postgresql":
        values = _values(lambda *p: " || ".join(p))
        sql = f"INSERT INTO delayed_jobs ({_COLUMNS}) SELECT {values} FROM generate_series(1, {rows}) AS s(g)"
    elif name == "sqlite":
        values = _values(lambda *p: " || ".join(p))
        sql = (f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {rows}) "
               f"INSERT INTO delayed_jobs ({_COLUMNS}) SELECT {values} FROM s")
    else:
        values = _values(lambda *p: f"CONCAT({', '.join(p)})")
        sql = f"INSERT INTO delayed_jobs ({_COLUMNS}) SELECT {values} FROM (SELECT seq AS g FROM seq_1_to_{rows}) s"
    stmt = text(sql).bindparams(*(bindparam(n, type_=Timestamp) for n in ("now", "past", "future")))
    with engine.begin() as conn:
        conn.execute(stmt, {"now": now, "past": now - timedelta(hours=1), "future": now + timedelta(days=1),
                            "tb": TRACEBACK})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql({"postgresql": "VACUUM ANALYZE delayed_jobs", "sqlite": "ANALYZE"}.get(
            name, "ANALYZE TABLE delayed_jobs"))


def queries(rows: int) -> dict[str, Callable[[Connection, datetime], object]]:
    """Each answer to time, by the command line that asks it."""
    def find(**kw) -> Callable[[Connection, datetime], object]:
        return lambda conn, now: lookup.find_jobs(conn, Search(**kw), now)

    middle = rows // 2 + 93  # a failed job, with its traceback
    return {
        "jobs": find(),
        "jobs --state ready": find(states=(State.READY,)),
        "jobs --state scheduled": find(states=(State.SCHEDULED,)),
        "jobs --state running": find(states=(State.RUNNING,)),
        "jobs --state failed": find(states=(State.FAILED,)),
        "jobs --queue mail --state failed": find(queue="mail", states=(State.FAILED,)),
        "jobs --class Resize": find(job_class="Resize"),
        "jobs --search boom --state failed": find(text="boom", states=(State.FAILED,)),
        f"jobs --search {middle} (console /)": find(text=str(middle)),
        "jobs --class NoSuchJob (reads all)": find(job_class="NoSuchJob"),
        f"show {middle} (console detail)": lambda conn, now: lookup.show_job(conn, middle, now),
    }


def measure(kind: str, url: str, rows: int, repeat: int) -> dict[str, dict]:
    config.set_current(config.Settings(database_url=url))
    engine = api.engine(url)
    started = time.perf_counter()
    fill(engine, rows)
    print(f"{kind}: loaded {rows:,} jobs in {time.perf_counter() - started:.1f}s", flush=True)
    now = api.utc_naive(api.now())
    out = {}
    with engine.connect().execution_options(sqlite_read=True) as conn:
        for name, q in queries(rows).items():
            full_scan = "reads all" in name  # seconds each: once is enough to show it
            if not full_scan:
                q(conn, now)
            times = []
            for _ in range(1 if full_scan else repeat):
                t0 = time.perf_counter()
                q(conn, now)
                times.append((time.perf_counter() - t0) * 1000)
            out[name] = {"median": statistics.median(times), "max": max(times), "runs": len(times)}
    return out


def render(results: dict) -> str:
    kinds = list(results)
    names = list(next(iter(results.values()))) if results else []
    rows = [[n] + [f"{results[k][n]['median']:.1f}" + ("" if results[k][n]["median"] <= GOAL_MS else " !")
                   for k in kinds] for n in names]
    return common.table(["query (median ms; ! over the goal)"] + kinds, rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.inspect_jobs", description=__doc__.split("\n\n")[0])
    p.add_argument("--databases", default=",".join(KINDS), help="comma-separated: sqlite,postgresql,mysql")
    p.add_argument("--rows", type=int, default=1_000_000, help="jobs in the table")
    p.add_argument("--repeat", type=int, default=5, help="timed runs of each query")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    if set(kinds) - set(KINDS):
        p.error(f"choose databases from {', '.join(KINDS)}")
    out: dict = {"args": vars(args), "machine": common.machine(), "results": {}}
    with tempfile.TemporaryDirectory(prefix="djctl-bench-") as tmp:
        dbs = common.Databases(Path(tmp))
        try:
            for kind in kinds:
                if kind != "sqlite" and not common.server_up(kind):
                    print(f"{kind}: server not reachable on 127.0.0.1, skipped", flush=True)
                    continue
                url = getattr(dbs, kind)("inspect")
                out["results"][kind] = measure(kind, url, args.rows, args.repeat)
        finally:
            dbs.drop_all()
    print(f"after: load {__import__('os').getloadavg()[0]:.2f}")
    print(render(out["results"]))
    print(f"\nresults: {common.save('inspect_jobs', out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
