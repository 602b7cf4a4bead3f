"""Issue 14: claims are leases, renewed by their worker, fenced when they cannot be.

Two workers stand for two hosts (different DJ_HOSTNAME), each a real ``djctl work``
process; one reaches the database through a TCP proxy that can hold every byte (a silent
partition) or reset every connection (an outage). A Traced job writes a line every 0.1 s,
so the trace shows when each run started and when it last ran: two runs of one job
overlap exactly when one starts before the other's last line.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

import djctl
from tests.chaos import Traced
from tests.chaos.conftest import CHAOS_APP, gone, kinds, make_app, started
from tests.chaos.harden_jobs import Offspring
from tests.support.commands import djctl_cmd
from tests.support.rows import count, job_row
from tests.support.waiting import wait_for

INTERVAL, TIMEOUT = 0.5, 4.0
LEASE = {"DJ_HEARTBEAT_INTERVAL": str(INTERVAL), "DJ_HEARTBEAT_TIMEOUT": str(TIMEOUT), "DJ_SLEEP_DELAY": "0.5",
         "DJ_APP": CHAOS_APP}


class Worker:
    """One ``djctl work`` process as host ``host``, its output in a file."""

    def __init__(self, tmp_path: Path, env: dict[str, str], host: str, url: str,
                 prefix: tuple[str, ...] = (), args: tuple[str, ...] = (), **extra: str) -> None:
        self.log = tmp_path / f"{host}.log"
        self.wrapped = bool(prefix)
        self.proc = subprocess.Popen(
            [*prefix, *djctl_cmd("work", *args)], stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            env={**env, **LEASE, "DJ_HOSTNAME": host, "DJ_DATABASE_URL": url, **extra})

    def text(self) -> str:
        return self.log.read_text()

    def started(self) -> bool:
        return "*** Starting job worker" in self.text()

    @property
    def pid(self) -> int:
        """The worker's pid, as it names itself (under faketime it is not ``proc``'s)."""
        return int(re.search(r"\*\*\* Starting job worker host:\S+ pid:(\d+)", self.text())[1])

    def stop(self) -> None:
        """SIGTERM the worker itself, then wait for it and everything below it. Under
        ``faketime`` or ``unshare --fork`` the process started is a wrapper that dies of the
        signal and leaves the worker running: it would go on taking the next test's jobs."""
        try:
            started = psutil.Process(self.proc.pid)
            tree = [started, *started.children(recursive=True)]
            worker = next(iter(started.children()), None) if self.wrapped else started
        except psutil.NoSuchProcess:
            tree, worker = [], None
        if worker is not None:
            try:
                worker.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _gone, alive = psutil.wait_procs(tree, timeout=30)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        self.proc.wait(10)


def trace(path: Path, key: str | None = None) -> dict[int, list[float]]:
    """Each worker pid's times (start, ticks, end) for the job ``key`` (default: any)
    traced in ``path``."""
    out: dict[int, list[float]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        _what, k, pid, at = line.split()
        if key is None or k == key:
            out.setdefault(int(pid), []).append(float(at))
    return out


def overlap(runs: dict[int, list[float]]) -> float:
    """Seconds during which two runs (each from its first to its last line) were both on."""
    spans = sorted((min(t), max(t)) for t in runs.values())
    return max([0.0] + [spans[i][1] - spans[i + 1][0] for i in range(len(spans) - 1)])


def completions(*workers: Worker) -> int:
    """COMPLETED lines in the workers' logs. A worker logs one after its row is gone: wait
    for it, do not count at once."""
    return sum(len(re.findall(r"\) COMPLETED after [0-9.]+$", w.text(), re.M)) for w in workers)



@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


@pytest.mark.parametrize("db_kind", kinds("postgresql", "mysql"))
def test_a_partitioned_worker_stops_its_job_before_another_takes_it_over(
        db_kind, db_url, djctl_env, proxy, workers, tmp_path):
    """Acceptance 1: one host partitioned (every byte held, processes alive) for twice the
    lease. Its worker kills its job before the lease can expire, and says why; the other
    host takes the job over only then; the traces show no overlap; one completion."""
    path = tmp_path / "trace.txt"
    job = djctl.enqueue(Traced(str(path), "long", seconds=10))
    cut_off = Worker(tmp_path, djctl_env, "hostA", proxy.url(db_url))
    workers.append(cut_off)
    wait_for(lambda: trace(path), 60, message="hostA to start the job")
    other = Worker(tmp_path, djctl_env, "hostB", db_url)
    workers.append(other)
    wait_for(other.started, 60, message="hostB's worker to start")

    proxy.freeze()
    wait_for(lambda: "stopped: lease could not be renewed" in cut_off.text(), TIMEOUT + 10,
             message="hostA to stop its job for want of a lease")
    assert f"(id={job}) stopped: lease could not be renewed" in cut_off.text()
    wait_for(lambda: len(trace(path)) == 2, TIMEOUT * 3 + 10, message="hostB to take the job over")
    proxy.hold(TIMEOUT * 2)
    proxy.thaw()

    wait_for(lambda: count(db_url) == 0, 60, message="the job to be done")
    runs = trace(path)
    assert set(runs) == {cut_off.pid, other.pid}
    assert overlap(runs) == 0.0, runs
    wait_for(lambda: completions(cut_off, other) >= 1, 10, message="the completion to be logged")
    assert completions(other) == 1 and completions(cut_off) == 0
    assert job_row(db_url, job) is None
    assert cut_off.proc.poll() is None and other.proc.poll() is None, "both workers stay alive"


@pytest.mark.parametrize("db_kind", kinds("postgresql", "mysql"))
def test_a_fenced_job_takes_its_children_with_it(db_kind, db_url, djctl_env, proxy, workers, tmp_path):
    """When the lease cannot be renewed, the job is stopped whole: the processes it started
    (in its group, in a new session, double-forked) die with it, as at max_run_time."""
    path = tmp_path / "pids.txt"
    job = djctl.enqueue(Offspring(str(path), seconds=120))
    cut_off = Worker(tmp_path, djctl_env, "hostA", proxy.url(db_url))
    workers.append(cut_off)
    pids = started(path)

    proxy.freeze()
    wait_for(lambda: "stopped: lease could not be renewed" in cut_off.text(), TIMEOUT + 10,
             message="hostA to stop its job for want of a lease")
    gone(pids, 10, "after the lease was lost")
    # Stop before the database answers again, so that the job is given back, not rerun here.
    cut_off.proc.send_signal(signal.SIGTERM)
    proxy.thaw()
    assert cut_off.proc.wait(60) == 0
    row = job_row(db_url, job)
    assert row["locked_by"] is None and row["attempts"] == 0 and row["failed_at"] is None


def _skewed_enqueue(env: dict[str, str], url: str, shift: str, path: Path) -> int:
    """Enqueue, from a process whose clock is ``shift`` off, a job to run 30 s from now."""
    code = ("import djctl, datetime; from tests.jobs import Touch; "
            f"print(djctl.enqueue(Touch({str(path)!r}, 'skewed'), "
            "run_at=djctl.now() + datetime.timedelta(seconds=30)))")
    out = subprocess.run(["faketime", "-f", shift, *djctl_cmd()[:1], "-c", code], env={**env, "DJ_DATABASE_URL": url},
                         capture_output=True, text=True, timeout=60, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.parametrize("db_kind", kinds("postgresql", "mysql"))
def test_clocks_five_minutes_off_take_nothing_early(db_kind, db_url, djctl_env, workers, tmp_path):
    """Acceptance 5: one worker's clock 5 minutes ahead, one 5 minutes behind (faketime).
    Neither takes the other's live claim, no scheduled job runs early, a skewed enqueuer's
    run_at is right by the database's clock, and each worker reports its skew."""
    if subprocess.run(["which", "faketime"], capture_output=True).returncode != 0:
        pytest.skip("faketime is not installed (.ci/run installs it)")
    path = tmp_path / "trace.txt"
    touched = tmp_path / "touched.txt"
    long = djctl.enqueue(Traced(str(path), "long", seconds=8))
    later = djctl.enqueue(Traced(str(path), "later", seconds=0), run_at=djctl.now() + timedelta(minutes=2))
    ahead = Worker(tmp_path, djctl_env, "ahead", db_url, prefix=("faketime", "-f", "+5m"))
    workers.append(ahead)
    wait_for(lambda: trace(path), 60, message="the fast host to start the long job")
    behind = Worker(tmp_path, djctl_env, "behind", db_url, prefix=("faketime", "-f", "-5m"))
    workers.append(behind)
    wait_for(behind.started, 60, message="the slow host's worker to start")

    before = _database_now(db_url)
    skewed = _skewed_enqueue(djctl_env, db_url, "+5m", touched)
    run_at = _run_at(db_url, skewed)
    # 30 s after the database's now when it was enqueued, give or take the enqueuer's
    # start-up: not 330 s, as by its own clock.
    assert 30 <= (run_at - before).total_seconds() < 120, (run_at, before)

    wait_for(lambda: job_row(db_url, long) is None, 60, message="the long job to be done")
    runs = trace(path)
    assert list(runs) == [ahead.pid], "the long job was taken over while its worker renewed it"
    assert job_row(db_url, later)["attempts"] == 0, "the scheduled job ran early"
    wait_for(lambda: completions(ahead, behind) >= 1, 10, message="the completion to be logged")
    assert completions(ahead, behind) == 1
    assert re.search(r"this host's clock is 3\d\d\.\ds ahead of the database's", ahead.text())
    assert re.search(r"this host's clock is 3\d\d\.\ds behind the database's", behind.text())


def _database_now(url: str):
    from sqlalchemy import text

    from djctl import api, clock
    with api.engine(url).connect() as conn:
        return conn.execute(text(clock.query(conn.dialect.name))).scalar_one()


def _run_at(url: str, job_id: int):
    from sqlalchemy import text

    from djctl import api
    with api.engine(url).connect() as conn:
        return conn.execute(text("SELECT run_at FROM delayed_jobs WHERE id = :id"), {"id": job_id}).scalar_one()


@pytest.mark.parametrize("db_kind", kinds("postgresql"))
def test_a_twin_host_name_in_another_pid_namespace_releases_no_live_claim(
        db_kind, db_url, djctl_env, workers, tmp_path):
    """Acceptance 3: two workers under one host name, one in its own PID namespace
    (``unshare --pid``), so that its pid means nothing in the other's process table. The
    other judges its claim by the lease alone: no release while it runs."""
    if not _unshare_works():
        pytest.skip("unshare --pid is refused here")
    path = tmp_path / "trace.txt"
    job = djctl.enqueue(Traced(str(path), "long", seconds=TIMEOUT * 3))
    boxed = Worker(tmp_path, djctl_env, "twin", db_url, prefix=("unshare", "--pid", "--fork", "--mount-proc"))
    workers.append(boxed)
    wait_for(lambda: trace(path), 60, message="the namespaced worker to start the job")
    holder = job_row(db_url, job)["locked_by"]
    (tmp_path / "b").mkdir()
    here = Worker(tmp_path / "b", djctl_env, "twin", db_url)
    workers.append(here)
    wait_for(here.started, 60, message="the twin's worker to start")

    wait_for(lambda: job_row(db_url, job) is None, 60, message="the job to be done")
    assert list(trace(path)) == [boxed.pid], "the twin released a live claim and ran the job again"
    wait_for(lambda: completions(boxed, here) >= 1, 10, message="the completion to be logged")
    assert completions(boxed) == 1 and completions(here) == 0
    assert re.fullmatch(rf"host:twin@ns\d+ pid:{boxed.pid}", holder), holder
    assert "Released" not in here.text()


@pytest.mark.parametrize("db_kind", kinds("postgresql", "mysql"))
def test_twins_with_one_host_name_and_one_pid_sign_their_claims_apart(
        db_kind, db_url, djctl_env, proxy, workers, tmp_path):
    """Two workers under one host name, each pid 1 of a PID namespace of its own (as in two
    containers). Their claims carry different names, so the one whose connection breaks —
    and then gives back whatever is locked in its name — leaves the other's job alone."""
    if not _unshare_works():
        pytest.skip("unshare --pid is refused here")
    path = tmp_path / "trace.txt"
    job = djctl.enqueue(Traced(str(path), "long", seconds=TIMEOUT * 3))
    boxed = ("unshare", "--pid", "--fork", "--mount-proc")
    first = Worker(tmp_path, djctl_env, "twin", db_url, prefix=boxed)
    workers.append(first)
    wait_for(lambda: trace(path), 60, message="the first twin to start the job")
    (tmp_path / "b").mkdir()
    second = Worker(tmp_path / "b", djctl_env, "twin", proxy.url(db_url), prefix=boxed)
    workers.append(second)
    wait_for(second.started, 60, message="the second twin's worker to start")
    assert first.pid == second.pid == 1

    proxy.cut()  # the second twin's round fails: it may have claimed without hearing of it
    wait_for(lambda: "database unavailable" in second.text(), 30, message="the second twin to lose its connection")
    proxy.restore()
    wait_for(lambda: job_row(db_url, job) is None, 60, message="the job to be done")

    starts = [ln for ln in path.read_text().splitlines() if ln.startswith("start ")]
    assert len(starts) == 1, starts  # (both twins trace as pid 1: count the runs' starts)
    wait_for(lambda: completions(first, second) >= 1, 10, message="the completion to be logged")
    assert completions(first) == 1 and completions(second) == 0
    assert "taken over" not in first.text() and "claim lost" not in first.text()
    names = {re.search(r"\*\*\* Starting job worker (.+)$", w.text(), re.M)[1] for w in (first, second)}
    assert len(names) == 2 and all(n.startswith("host:twin@ns") and n.endswith(" pid:1") for n in names), names


@pytest.mark.parametrize("db_kind", kinds("postgresql", "mysql"))
def test_twin_supervisors_one_in_its_own_pid_namespace_release_no_live_claim(db_kind, request, tmp_path):
    """Acceptance 3 with supervisors: two ``djctl up`` under one host name, one of them
    (with its worker) in a PID namespace of its own. Neither supervisor nor worker of the
    other releases the claim its twin's worker renews; the job runs once."""
    if not _unshare_works():
        pytest.skip("unshare --pid is refused here")
    path = tmp_path / "trace.txt"
    twin = {**LEASE, "DJ_HOSTNAME": "twin"}
    boxed, here = (make_app(request, tmp_path, name, **twin) for name in ("boxed", "here"))
    djctl.enqueue(Traced(str(path), "long", seconds=TIMEOUT * 3))
    with (boxed.dir / "up.log").open("w") as out:
        wrapper = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc",
                                    *djctl_cmd("up", "--foreground", "--formation", "worker=1")],
                                   cwd=boxed.dir, env=boxed.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: trace(path), 60, message="the namespaced supervisor's worker to start the job")
        here.run("up", "--formation", "worker=1")
        here.wait_up(1)
        wait_for(lambda: count(here.db_url) == 0, 60, message="the job to be done")
        starts = [ln for ln in path.read_text().splitlines() if ln.startswith("start ")]
        assert len(starts) == 1, starts
        assert not here.log_has("Released"), here.log_has("Released")
        wait_for(lambda: boxed.log_has(r"\) COMPLETED after"), 10, message="the completion to be logged")
        assert len(boxed.log_has(r"\) COMPLETED after")) == 1 and not here.log_has(r"\) COMPLETED after")
        here.run("down")
    finally:
        supervisor = next(iter(psutil.Process(wrapper.pid).children()), None) if wrapper.poll() is None else None
        if supervisor is not None:
            supervisor.send_signal(signal.SIGTERM)  # unshare would die of it and leave the supervisor
        try:
            wrapper.wait(60)
        except subprocess.TimeoutExpired:
            wrapper.kill()
        for app in (boxed, here):
            app.kill_everything()


def _unshare_works() -> bool:
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.parametrize("db_kind", kinds("postgresql", "mysql"))
def test_an_outage_longer_than_the_lease_with_two_hosts_runs_nothing_twice_at_once(
        db_kind, db_url, djctl_env, proxy, workers, tmp_path):
    """Acceptance 2: every connection reset for twice ``heartbeat_timeout`` while two hosts
    run long jobs. Each worker stops its own job before its lease can expire and gives it
    back; nobody releases the other's claim; every job completes once, no two runs overlap."""
    path = tmp_path / "trace.txt"
    jobs = {q: djctl.enqueue(Traced(str(path), q, seconds=TIMEOUT * 2), queue=q) for q in ("a", "b")}
    hosts = [Worker(tmp_path, djctl_env, f"host{q}", proxy.url(db_url), args=("--queues", q)) for q in ("a", "b")]
    workers.extend(hosts)
    wait_for(lambda: trace(path, "a") and trace(path, "b"), 60, message="both hosts to start their job")

    proxy.cut()
    proxy.hold(TIMEOUT * 2)
    proxy.restore()
    wait_for(lambda: count(db_url) == 0, 120, message="both jobs to be done")

    for q in ("a", "b"):
        assert overlap(trace(path, q)) == 0.0, trace(path, q)
    wait_for(lambda: completions(*hosts) == 2, 10, message="both completions to be logged")
    assert [completions(h) for h in hosts] == [1, 1]
    for h in hosts:
        assert "taken over by another worker" not in h.text() and "claim lost" not in h.text()
        assert h.proc.poll() is None
    assert all(job_row(db_url, j) is None for j in jobs.values())
