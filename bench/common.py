"""What the benchmarks share: throwaway databases, forked workers, latency sampling, tables, results."""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
MYSQL_SERVER = "mysql://root@127.0.0.1:3306"


# -- databases -----------------------------------------------------------------


@dataclass
class Databases:
    """Creates one fresh database per name on the local servers; ``drop_all()`` removes them.

    Names carry this process's id, so runs by different people never collide.
    """

    tmp: Path
    created: list[tuple[str, str]] = field(default_factory=list)

    def sqlite(self, name: str) -> str:
        path = self.tmp / f"{name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"

    def postgresql(self, name: str) -> str:
        import psycopg

        db = f"djbench_{name}_{os.getpid()}"
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
            conn.execute(f'CREATE DATABASE "{db}"')
        self.created.append(("postgresql", db))
        return f"{PG_SERVER}/{db}"

    def mysql(self, name: str) -> str:
        import pymysql

        db = f"djbench_{name}_{os.getpid()}"
        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=5, autocommit=True)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            cur.execute(f"CREATE DATABASE `{db}`")
        conn.close()
        self.created.append(("mysql", db))
        return f"{MYSQL_SERVER}/{db}"

    def drop_all(self) -> None:
        for kind, db in reversed(self.created):
            try:
                if kind == "postgresql":
                    import psycopg

                    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                else:
                    import pymysql

                    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
                    with conn.cursor() as cur:
                        cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
                    conn.close()
            except Exception as e:  # noqa: BLE001 - cleanup is best effort
                print(f"(could not drop {kind} database {db}: {e})", file=sys.stderr)
        self.created.clear()


def server_up(kind: str) -> bool:
    """Whether the local server for ``kind`` answers."""
    try:
        if kind == "postgresql":
            import psycopg

            psycopg.connect(f"{PG_SERVER}/postgres", connect_timeout=3).close()
        elif kind == "mysql":
            import pymysql

            pymysql.connect(host="127.0.0.1", port=3306, user="root", connect_timeout=3).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


# -- processes -----------------------------------------------------------------


def fork(body: Callable[[], None], log: Path | None = None) -> int:
    """Run ``body`` in a forked child (stdout/stderr to ``log``); the child never returns."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if log is not None:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False, buffering=1)
        body()
        code = 0
    except BaseException:  # noqa: BLE001 - report and leave with a failure status
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run_workers(n: int, body: Callable[[], None], log: Path, timeout: float = 600.0) -> float:
    """Fork ``n`` workers running ``body``; seconds from the first fork until the last one exited."""
    started = time.perf_counter()
    pids = [fork(body, log) for _ in range(n)]
    deadline = started + timeout
    failed = []
    for pid in pids:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.perf_counter() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise RuntimeError(f"worker {pid} did not finish within {timeout:.0f}s; see {log}")
            time.sleep(0.001)
        if os.waitstatus_to_exitcode(status) != 0:
            failed.append(pid)
    elapsed = time.perf_counter() - started
    if failed:
        raise RuntimeError(f"worker(s) {failed} failed; see {log}")
    return elapsed


def stop(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM ``pid`` (one of ours) and reap it, SIGKILL after ``timeout``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


# -- latency -----------------------------------------------------------------------


def read_stamps(path: Path) -> dict[int, float]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2:
            out[int(parts[0])] = float(parts[1])
    return out


def wait_stamps(path: Path, want: Iterable[int], timeout: float) -> dict[int, float]:
    want = set(want)
    deadline = time.monotonic() + timeout
    while True:
        stamps = read_stamps(path)
        if want <= stamps.keys():
            return stamps
        if time.monotonic() > deadline:
            missing = sorted(want - stamps.keys())
            raise RuntimeError(f"{len(missing)} stamp job(s) never started (first: {missing[:5]})")
        time.sleep(0.01)


def sample_latency(enqueue: Callable[[int], None], path: Path, samples: int, gap: float) -> list[float]:
    """Enqueue->start latencies in ms. ``enqueue(i)`` puts a job that runs ``jobs.stamp(path, i)``.

    A first job (not counted) proves the worker is up; then ``samples`` jobs, ``gap``
    seconds apart, each compared with the wall clock read just before its enqueue.
    """
    enqueue(-1)
    wait_stamps(path, [-1], timeout=60)
    sent = {}
    for i in range(samples):
        sent[i] = time.time()
        enqueue(i)
        time.sleep(gap)
    stamps = wait_stamps(path, range(samples), timeout=60)
    return [(stamps[i] - sent[i]) * 1000 for i in range(samples)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def latency_summary(values: list[float]) -> dict:
    return {"p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99), "max_ms": max(values),
            "mean_ms": statistics.fmean(values), "samples": len(values)}


def best_of(runs: int, measure: Callable[[], float]) -> float:
    """The smallest of ``runs`` timings: the least disturbed by the rest of the machine."""
    return min(measure() for _ in range(runs))


# -- output -----------------------------------------------------------------------


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for n, r in enumerate([header, *rows]):
        cells = [str(r[0]).ljust(widths[0])] + [str(c).rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def rate(n: int, seconds: float | None) -> str:
    return "-" if seconds is None else f"{n / seconds:,.0f}"


def save(name: str, data: dict) -> Path:
    """Write ``data`` to bench/results/<name>-<time>.json; returns the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def machine() -> dict:
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_avg": os.getloadavg(), "cpu_pressure": cpu_pressure(), "djctl_source": djctl_source()}


def djctl_source() -> dict:
    """Which djctl was measured: a digest of its sources and when they last changed."""
    import hashlib

    files = sorted((REPO / "djctl").rglob("*.py"))
    digest = hashlib.sha1()
    for f in files:
        digest.update(f.read_bytes())
    newest = max((f.stat().st_mtime for f in files), default=0)
    return {"sha1": digest.hexdigest()[:12], "modified": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(newest))}


def bench_env(url: str, state_dir: Path) -> dict[str, str]:
    """Environment for a ``djctl`` subprocess working ``url`` with the bench jobs."""
    env = dict(os.environ)
    env.update(DJ_DATABASE_URL=url, DJ_APP="bench.jobs", DJ_STATE_DIR=str(state_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    env.pop("DATABASE_URL", None)
    # Start-up as an installed djctl has it: byte-code cached (kept out of the source tree).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), f"djctl-bench-pycache-{os.getuid()}"))
    return env


def cpu_pressure() -> float | None:
    """Share of the last 10 s in which some runnable task waited for a CPU (Linux PSI), in %."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def wait_quiet(timeout: float, threshold: float = 10.0) -> str:
    """Wait up to ``timeout`` s for CPU pressure under ``threshold`` %; a line describing the machine."""
    deadline = time.monotonic() + timeout
    while True:
        pressure = cpu_pressure()
        if pressure is None or pressure < threshold or time.monotonic() >= deadline:
            break
        time.sleep(1)
    load = os.getloadavg()[0]
    busy = pressure is not None and pressure >= threshold
    note = "  WARNING: the machine is busy; figures will be low and noisy" if busy else ""
    shown = "n/a" if pressure is None else f"{pressure:.0f}%"
    return f"machine: {os.cpu_count()} CPUs, load {load:.2f}, CPU pressure {shown}{note}"
