"""What pausing costs the claim (issue 17), on SQLite, PostgreSQL and MariaDB, A/B in one run.

Method: a worker round as bench.queue times it — one transaction deleting the 10 jobs claimed
in the previous round and claiming the next 10 with djctl's SQL (djctl.queue.claims.Claims) —
the median of ``--rounds`` rounds after 10 warm-up rounds, for:

- ``no pause, with check``: the claim as it is, reading djctl_paused_queues (nothing paused);
- ``no pause, without``: the same statement with the paused-queue condition taken out (A/B:
  they alternate round by round on one connection, over the same table), and the claim of a
  worker started with ``--queues default``;
- ``--held`` ready jobs in a paused queue ahead (priority -1) of the ready ones, for a worker
  of every queue (it steps over them in the claim index), and for one started with
  ``--queues default`` (it never meets them).

Prints a table; JSON goes to bench/results/pause-<time>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    __package__ = "bench"

from sqlalchemy import Engine, text

import djctl
from djctl import clock
from djctl.queue import admin
from djctl.queue.claims import PAUSED, Claims, Filter
from djctl.worker import identity

from . import common, fill

KINDS = ("sqlite", "postgresql", "mysql")


class Unchecked(Filter):
    """The filter without the paused-queue condition: the claim before pausing existed."""

    def sql(self) -> str:
        return super().sql().replace(PAUSED, "")


def rounds(engine: Engine, claimers: dict[str, Claims], n: int) -> dict[str, float]:
    """Median ms of a round for each claimer, alternating round by round."""
    held: dict[str, list[int]] = {k: [] for k in claimers}
    times: dict[str, list[float]] = {k: [] for k in claimers}
    with engine.connect() as conn:
        for r in range(n + 10):
            for name, c in claimers.items():
                started = time.perf_counter()
                with conn.begin():
                    held[name] = [j.id for j in c.claim(conn, 10, clock.utcnow(), complete=held[name])]
                if r >= 10:
                    times[name].append(time.perf_counter() - started)
                if len(held[name]) != 10:
                    raise RuntimeError(f"{name}: claim returned {len(held[name])} jobs, expected 10")
        with conn.begin():
            for name, c in claimers.items():
                c.complete(conn, held[name])
    return {k: common.percentile(v, 50) * 1000 for k, v in times.items()}


def claimer(dialect: str, n: int, flt: Filter) -> Claims:
    return Claims(dialect, identity.format("bench", 1000 + n), flt)


def measure(url: str, args: argparse.Namespace, tmp: Path) -> dict:
    djctl.configure(database_url=url, state_dir=str(tmp / ".djctl"))
    engine = djctl.engine()
    dialect = engine.dialect.name
    need = (args.rounds + 10) * 10
    fill.insert_rows(engine, 3 * need, "ready")
    with engine.begin() as conn:
        conn.execute(text("UPDATE delayed_jobs SET queue = 'default' WHERE queue IS NULL"))
    out = rounds(engine, {"no pause, with check": claimer(dialect, 1, Filter()),
                          "no pause, without": claimer(dialect, 2, Unchecked()),
                          "no pause, --queues default": claimer(dialect, 5, Filter(("default",)))}, args.rounds)
    fill.insert_rows(engine, args.held, "ready")
    with engine.begin() as conn:
        conn.execute(text("UPDATE delayed_jobs SET queue = 'held', priority = -1 WHERE id IN "
                          "(SELECT id FROM (SELECT id FROM delayed_jobs WHERE queue IS NULL "
                          "ORDER BY id DESC LIMIT :n) AS newest)"), {"n": args.held})
        conn.execute(text("UPDATE delayed_jobs SET queue = 'default' WHERE queue IS NULL"))
    fill.insert_rows(engine, 2 * need, "ready")
    with engine.begin() as conn:
        conn.execute(text("UPDATE delayed_jobs SET queue = 'default' WHERE queue IS NULL"))
    admin.pause(engine, ["held"], "bench")
    if dialect == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE delayed_jobs")
    out.update(rounds(engine, {f"{args.held} held, every queue": claimer(dialect, 3, Filter()),
                               f"{args.held} held, --queues default": claimer(dialect, 4, Filter(("default",)))},
                      args.rounds))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--held", type=int, default=10_000, help="ready jobs in the paused queue")
    p.add_argument("--databases", default=",".join(KINDS))
    args = p.parse_args(argv)
    results: dict[str, dict] = {"machine": common.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        dbs = common.Databases(Path(tmp))
        try:
            for kind in args.databases.split(","):
                if not common.server_up(kind):
                    print(f"{kind}: server not answering, skipped")
                    continue
                url = getattr(dbs, kind)("pause")
                results[kind] = measure(url, args, Path(tmp) / kind)
                print(kind, {k: round(v, 3) for k, v in results[kind].items()}, flush=True)
        finally:
            dbs.drop_all()
    kinds = [k for k in KINDS if k in results]
    names = list(results[kinds[0]]) if kinds else []
    print(common.table(["claim round of 10 (median ms)", *kinds],
                       [[n, *(f"{results[k][n]:.3f}" for k in kinds)] for n in names]))
    print(f"saved {common.save('pause', results)}")
    os.environ.pop("DJ_DATABASE_URL", None)


if __name__ == "__main__":
    main()
