"""What concurrency limits cost jobs that have none: djctl before and after them, A/B in one run.

    python -m bench.limits [--databases sqlite,postgresql,mysql] [--jobs 4000] [--workers 2]
                           [--rounds 200] [--blocked 10000] [--repeat 3] [--before REF]

Method. "before" is djctl as of git ``--before`` (default: ``main``), exported with
``git archive`` to a temporary directory; "after" is this checkout. Each measurement runs in
a fresh interpreter whose ``djctl`` is the side's (its directory first on PYTHONPATH), on a
database of the side's own (a fresh SQLite file, or a new database on the local server),
so neither side reads a schema the other made. Sides alternate within each repeat
(before, after, before, after, ...) so that the machine's load falls on both alike; the
best of ``--repeat`` is kept.

- keyless throughput: ``--jobs`` no-op jobs (no key) queued with enqueue_many, then
  ``--workers`` workers forked from the measuring process run Worker.work_off until
  nothing is ready; jobs/s = jobs / (first fork -> last exit).
- client CPU per job: user + system CPU of the workers and their executors (reaped
  children) per job, in ms: what djctl itself spent, much less disturbed by the rest of
  the machine than wall-clock time (it leaves out the database server's own work).
- claim cost: median ms of a worker round — one transaction deleting the 10 jobs claimed
  in the previous round and claiming the next 10 — over ``--rounds`` rounds, the sides
  interleaved round by round in one process: before's ``claims.py`` (loaded from its
  export, on a database before's djctl created) and this checkout's, plus this checkout's
  with a look at the gates in every round ("+gates": the worker looks at most every
  0.25 s, or when the plain claim came back short), the worst case for keyless jobs.
- blocked (after only): ``--blocked`` jobs with the concurrency key ``busy`` (limit 1)
  queued before, their one slot held by a claim that never ends; then the keyless
  throughput (and CPU per job) again, compared with the same side's on the empty table.

Prints a table; everything also goes to bench/results/limits-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    __package__ = "bench"

from . import common

KINDS = ("sqlite", "postgresql", "mysql")


def measure(url: str, tmp: Path, jobs: int, workers: int, rounds: int, blocked: int, after: bool) -> dict:
    """One side's figures on ``url`` (run inside the side's own interpreter)."""
    from .djctl_side import Djctl

    d = Djctl(url, tmp, "side")
    d.reset()
    cpu = _children_cpu()
    out = {"throughput": jobs / _process_keeping(d, workers, jobs)}
    out["cpu_ms_per_job"] = (_children_cpu() - cpu) * 1000 / jobs
    if after:
        _block(d, blocked)
        cpu = _children_cpu()
        out["blocked_throughput"] = jobs / _process_keeping(d, workers, jobs)
        out["blocked_cpu_ms_per_job"] = (_children_cpu() - cpu) * 1000 / jobs
    return out


def _children_cpu() -> float:
    """CPU seconds (user + system) of the workers and their executors reaped so far: what
    djctl itself spent, whatever else the machine was doing."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def claim_ab(kind: str, before_root: Path, dbs: common.Databases, rounds: int, n: int) -> dict:
    """Median ms of a claim round, the two sides interleaved round by round in this process:
    before's claims.py (loaded from its export) on a database its djctl made, this
    checkout's on one of its own, and this checkout's with a look at the gates each round."""
    import importlib.util
    import random

    from djctl.queue import engines as store
    from djctl.queue.claims import Claims
    from djctl.queue.gates import Gates
    from djctl.worker import identity

    from . import fill

    urls = {side: getattr(dbs, kind)(f"limits_claim_{side}_{n}") for side in ("before", "after")}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(before_root), str(common.REPO)])}
    make = "import sys, djctl; djctl.configure(database_url=sys.argv[1]); djctl.engine()"
    subprocess.run([sys.executable, "-c", make, urls["before"]], env=env, check=True, cwd=common.REPO)
    from djctl import api

    api.engine(urls["after"])  # this checkout's schema
    spec = importlib.util.spec_from_file_location("claims_before", before_root / "djctl/queue/claims.py")
    old = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["claims_before"] = old  # its dataclasses look their module up
    spec.loader.exec_module(old)  # type: ignore[union-attr]
    engines = {side: store.make_engine(url) for side, url in urls.items()}
    fill.insert_rows(engines["before"], (rounds + 10) * 10, "ready")
    fill.insert_rows(engines["after"], (rounds + 10) * 20, "ready")
    name = identity.format("bench", os.getpid())
    dialect = engines["after"].dialect.name
    series = {"before": (old.Claims(dialect, name), None, "before"),
              "after": (Claims(dialect, name), None, "after"),
              "after+gates": (Claims(dialect, name + "g"), Gates(dialect, name + "g"), "after")}
    conns = {}
    for side, engine in engines.items():
        conn = engine.connect()
        conns[side] = conn.execution_options(isolation_level="AUTOCOMMIT") if dialect == "postgresql" else conn
    held: dict[str, list[int]] = {k: [] for k in series}
    times: dict[str, list[float]] = {k: [] for k in series}
    from .djctl_side import _utcnow

    for r in range(rounds + 10):
        order = list(series)
        random.shuffle(order)
        for key in order:
            plain, gates, db = series[key]
            conn = conns[db]
            started = time.perf_counter()
            with conn.begin():
                got = plain.claim(conn, 10, _utcnow(), complete=held[key])
                if gates is not None:
                    got += gates.claim(conn, 1, _utcnow())
            if r >= 10:
                times[key].append(time.perf_counter() - started)
            held[key] = [j.id for j in got]
    for conn in conns.values():
        conn.close()
    for engine in engines.values():
        engine.dispose()
    dbs.drop_all()
    return {k: common.percentile(v, 50) * 1000 for k, v in times.items()}


def _block(d, n: int) -> None:
    """``n`` jobs of the key ``busy`` (limit 1) queued, its one slot held for good."""
    import djctl
    from djctl.queue.gates import Gates

    from .djctl_side import _utcnow
    from .jobs import Noop

    d.reset()
    d._use()
    for start in range(0, n, 1000):
        djctl.enqueue_many((Noop() for _ in range(min(1000, n - start))), concurrency_key="busy")
    with d.engine.begin() as conn:
        if len(Gates(d.dialect, "host:elsewhere pid:1").claim(conn, 5, _utcnow())) != 1:
            raise RuntimeError("the busy key's slot was not taken")


def _settle(d) -> None:
    """What autovacuum / the statistics daemon would soon do after a bulk change."""
    if d.dialect == "postgresql":
        with d.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE delayed_jobs")
    elif d.dialect != "sqlite":
        with d.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE TABLE delayed_jobs")


def _process_keeping(d, workers: int, n: int) -> float:
    """Djctl.process, leaving the blocked jobs (if any) in the table; the statistics and
    dead rows settled first, as the database would soon do."""
    from . import common as c
    from .djctl_side import _work_off

    d.fill(n)
    _settle(d)
    d.engine.dispose()
    elapsed = c.run_workers(workers, _work_off, d.log)
    with d.engine.connect().execution_options(sqlite_read=True) as conn:
        left = conn.exec_driver_sql("SELECT COUNT(*) FROM delayed_jobs WHERE gate IS NULL").scalar_one()
    if left:
        raise RuntimeError(f"{left} keyless jobs left after workoff; see {d.log}")
    return elapsed


def _export(ref: str, tmp: Path) -> Path:
    """djctl's package as of git ``ref``, in a directory of its own."""
    root = tmp / "before"
    root.mkdir()
    archive = subprocess.run(["git", "archive", ref, "djctl"], cwd=common.REPO, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return root


def _side(kind: str, side: str, root: Path, dbs: common.Databases, tmp: Path, args: argparse.Namespace,
          n: int) -> dict:
    url = getattr(dbs, kind)(f"limits_{side}_{n}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(common.REPO)])
    env.pop("DATABASE_URL", None)
    spec = json.dumps({"url": url, "tmp": str(tmp / f"{kind}-{side}-{n}"), "jobs": args.jobs,
                       "workers": args.workers, "rounds": args.rounds, "blocked": args.blocked,
                       "after": side == "after"})
    proc = subprocess.run([sys.executable, "-m", "bench.limits", "--measure", spec], env=env, cwd=common.REPO,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {side}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--databases", default=",".join(KINDS))
    p.add_argument("--jobs", type=int, default=4000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--blocked", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--before", default="main")
    p.add_argument("--measure", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        spec = json.loads(args.measure)
        Path(spec["tmp"]).mkdir(parents=True, exist_ok=True)
        result = measure(spec["url"], Path(spec["tmp"]), spec["jobs"], spec["workers"], spec["rounds"],
                         spec["blocked"], spec["after"])
        print(json.dumps(result))
        return
    print(common.wait_quiet(0))
    results: dict = {"machine": common.machine(), "args": vars(args), "runs": {}}
    rows = []
    with tempfile.TemporaryDirectory(prefix="djctl-bench-limits-") as t:
        tmp = Path(t)
        roots = {"before": _export(args.before, tmp), "after": common.REPO}
        dbs = common.Databases(tmp)
        try:
            for kind in args.databases.split(","):
                if not common.server_up(kind):
                    print(f"({kind}: no server, skipped)")
                    continue
                runs: dict[str, list[dict]] = {"before": [], "after": [], "claim": []}
                for n in range(args.repeat):
                    for side in ("before", "after") if n % 2 == 0 else ("after", "before"):
                        runs[side].append(_side(kind, side, roots[side], dbs, tmp, args, n))
                    dbs.drop_all()
                    runs["claim"].append(claim_ab(kind, roots["before"], dbs, args.rounds, n))
                results["runs"][kind] = runs
                rows.append(_row(kind, runs))
        finally:
            dbs.drop_all()
    print(common.table(["database", "keyless j/s before", "after", "Δ", "cpu ms/job before", "after", "Δ",
                        "claim ms before", "after", "Δ", "+gates", "Δ", "10k blocked j/s", "vs empty",
                        "cpu vs empty"], rows))
    print(common.wait_quiet(0))
    print(f"results: {common.save('limits', results)}")


def _row(kind: str, runs: dict[str, list[dict]]) -> list[str]:
    def best(side: str, key: str, pick=max) -> float:
        return pick(r[key] for r in runs[side])

    before, after = best("before", "throughput"), best("after", "throughput")
    cpu_before, cpu_after = best("before", "cpu_ms_per_job", min), best("after", "cpu_ms_per_job", min)
    claim = {k: min(r[k] for r in runs["claim"]) for k in ("before", "after", "after+gates")}
    blocked, cpu_blocked = best("after", "blocked_throughput"), best("after", "blocked_cpu_ms_per_job", min)
    return [kind, f"{before:,.0f}", f"{after:,.0f}", f"{after / before - 1:+.1%}",
            f"{cpu_before:.3f}", f"{cpu_after:.3f}", f"{cpu_after / cpu_before - 1:+.1%}",
            f"{claim['before']:.3f}", f"{claim['after']:.3f}", f"{claim['after'] / claim['before'] - 1:+.1%}",
            f"{claim['after+gates']:.3f}", f"{claim['after+gates'] / claim['before'] - 1:+.1%}",
            f"{blocked:,.0f}", f"{blocked / after - 1:+.1%}", f"{cpu_blocked / cpu_after - 1:+.1%}"]


if __name__ == "__main__":
    main()
