"""Where a djctl worker's time goes, per job: py-spy over a real ``djctl workoff`` and its executor.

    python -m bench.profile [--database sqlite|postgresql|mysql] [--jobs 20000] [--rate 500] [--cpu] [--raw FILE]

Method: ``--jobs`` no-op jobs are queued in a fresh database; ``py-spy record --idle
--subprocesses`` samples the worker and its forked executor at ``--rate`` Hz for the
whole run (idle samples included, so the figures are wall time, not just CPU). Every
sample is put in one category by its stack (start-up, SQL commit, SQL statements,
JSON, pipes, logging, waiting ...), and shown as microseconds per job for each process.
The worker and the executor run at the same time, so their columns overlap rather
than add up. ``--cpu`` drops the samples of waiting threads: CPU time only. On PostgreSQL the number of commits per job comes from pg_stat_database.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    __package__ = "bench"

import argparse
import linecache
import shutil
import subprocess
import tempfile
import time
from collections import Counter

from . import common
from .djctl_side import Djctl

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


def _frames(stack: str) -> list[tuple[str, str, int]]:
    out = []
    for part in stack.split(";"):
        if part.startswith("process "):
            continue
        name, _, where = part.rpartition(" (")
        file, _, line = where.rstrip(")").rpartition(":")
        out.append((name, file, int(line) if line.isdigit() else 0))
    return out


def _source(file: str, line: int) -> str:
    if file.startswith("djctl/"):
        return linecache.getline(str(common.REPO / file), line).strip()
    return ""


def classify(frames: list[tuple[str, str, int]]) -> tuple[str, str]:
    """(process role, category) of one sampled stack."""
    names = [f[0] for f in frames]
    role = "executor" if any(n == "serve" and f.endswith("djctl/worker/executor.py") for n, f, _ in frames) else "worker"
    if not frames:
        return role, "outside Python frames"
    leaf_name, leaf_file, leaf_line = frames[-1]
    own = [f for f in frames if f[1].startswith("djctl/")]
    leaf_own = own[-1] if own else frames[-1]
    src = _source(leaf_own[1], leaf_own[2])
    if any(n in ("_find_and_load", "_handle_fromlist") for n in names) or "Worker.__post_init__" in names:
        return role, "start-up and shutdown"
    if "api.engine" in names or "current_version" in names or "Child.__init__" == leaf_own[0] and role == "worker":
        return role, "start-up and shutdown"
    if leaf_file.startswith("json/"):
        return role, "JSON encode/decode"
    if any(n in ("_stdout_log", "Worker._say", "Report.outcome") for n in names) or "sys.stdout.flush" in src:
        return role, "logging (per-job lines)"
    if any("commit" in n.lower() or n == "TransactionalContext.__exit__" for n in names):
        return role, "SQL: COMMIT (fsync / round trip)"
    if any(n in ("Connection.begin", "Engine.connect", "Rounds._connection") for n in names):
        return role, "SQL: BEGIN / connection"
    if any(f.startswith(("sqlalchemy/", "psycopg/", "pymysql/", "sqlite3/")) for _, f, _ in frames):
        for caller, label in (("Claims.claim", "claim"), ("Claims.complete", "complete (DELETE)"),
                              ("recover", "maintenance"), ("Claims.fail", "fail")):
            if caller in names:
                return role, f"SQL: {label}"
        return role, "SQL: other statements"
    if "Journal.finished" in names:
        return role, "journal append (executor)"
    if "Child.send" in names or "_write" in names or "_revoked" in names or "Child.revoke" in names:
        return role, "pipe write"
    if "Child.read" in names:
        return role, "pipe read"
    if "select.select" in src:
        return role, "waiting in select()"
    if role == "executor" and "for line in incoming" in src:
        return role, "waiting for the next job (pipe)"
    if any(n in ("load", "Decoder.object", "Decoder.value", "resolve", "loads") for n in names):
        return role, "decode handler"
    if "_outcome" in names:
        return role, "run job + hooks"
    if "Worker._shutdown" in names or "reap" in src:
        return role, "start-up and shutdown"
    return role, "python bookkeeping"


def summarize(raw: Path, jobs: int, rate: int) -> dict[str, Counter]:
    per: dict[str, Counter] = {"worker": Counter(), "executor": Counter()}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        role, category = classify(_frames(stack))
        per[role][category] += int(count)
    return per


def render(per: dict[str, Counter], jobs: int, rate: int) -> str:
    us = 1e6 / rate / jobs
    cats = sorted(set(per["worker"]) | set(per["executor"]),
                  key=lambda c: -(per["worker"][c] + per["executor"][c]))
    rows = [[c, f"{per['worker'][c] * us:,.1f}", f"{per['executor'][c] * us:,.1f}"] for c in cats]
    rows.append(["total (wall per job)", f"{sum(per['worker'].values()) * us:,.1f}",
                 f"{sum(per['executor'].values()) * us:,.1f}"])
    return common.table(["µs per job", "worker", "executor"], rows)


def _pg_commits(url: str) -> int:
    import psycopg

    db = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (db,)).fetchone()[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--database", default="postgresql", choices=["sqlite", "postgresql", "mysql"])
    p.add_argument("--jobs", type=int, default=20000)
    p.add_argument("--rate", type=int, default=500, help="samples per second")
    p.add_argument("--cpu", action="store_true", help="CPU samples only (leave out time spent waiting)")
    p.add_argument("--raw", type=Path, help="keep py-spy's raw (collapsed) stacks in this file")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="djctl-profile-") as tmp_name:
        tmp = Path(tmp_name)
        dbs = common.Databases(tmp)
        try:
            d = Djctl(getattr(dbs, args.database)("profile"), tmp, "profile")
            d.fill(args.jobs)
            d.engine.dispose()
            raw = args.raw or tmp / "raw.txt"
            env = common.bench_env(d.url, tmp / ".djctl")
            commits = _pg_commits(d.url) if args.database == "postgresql" else None
            started = time.perf_counter()
            with open(tmp / "worker.log", "w") as log:
                subprocess.run([PY_SPY, "record", *([] if args.cpu else ["--idle"]), "--subprocesses", "--nonblocking", "-r", str(args.rate),
                                "--format", "raw", "-o", str(raw), "--", sys.executable, "-m", "djctl", "workoff"],
                               env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, check=True)
            wall = time.perf_counter() - started
            if commits is not None:
                time.sleep(0.6)  # the statistics collector reports with a short delay
                commits = _pg_commits(d.url) - commits
            left = d.remaining()
        finally:
            dbs.drop_all()
        per = summarize(raw, args.jobs, args.rate)
        print(f"djctl source {common.djctl_source()}")
        print(f"{args.database}: {args.jobs} jobs in {wall:.2f}s under py-spy ({args.jobs / wall:,.0f} jobs/s), "
              f"{left} left" + (f", {commits / args.jobs:.2f} commits per job" if commits is not None else ""))
        print(render(per, args.jobs, args.rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
