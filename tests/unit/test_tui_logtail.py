"""The console's log tail and throughput: what they count, and flat memory while the log grows by 100 MB."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections import deque
from datetime import datetime, timedelta, timezone

from djctl.daemon.logs import LogFilter, LogWriter
from djctl.tui.logtail import LogFollower, Throughput
from tests.conftest import ROOT, wait_for

NOW = datetime(2026, 11, 22, 10, 4, 5, tzinfo=timezone.utc)


def job_line(at: datetime, outcome: str, proc: str = "worker.1") -> str:
    return (f"{at.isoformat(timespec='microseconds')} app[{proc}]: [Worker(host:h pid:1)] Job Touch (id=7) "
            + ("COMPLETED" if outcome == "done" else "FAILED (0 prior attempts) with RuntimeError: boom"))


def test_throughput_counts_per_job_lines_by_their_own_time():
    tp = Throughput(window=60)
    for s in range(10):
        for _ in range(s):
            tp.record(job_line(NOW - timedelta(seconds=10 - s), "done"))
    tp.record(job_line(NOW - timedelta(seconds=3), "failed"))
    tp.record(job_line(NOW - timedelta(minutes=5), "done"))  # older than the window
    tp.record(f"{NOW.isoformat()} djctl[worker.1]: State changed from starting to up")
    tp.record(f"{NOW.isoformat()} app[worker.1]: I said Job X (id=1) COMPLETED] in my own output")
    done, failed = tp.series(NOW)
    assert len(done) == 60 and done[-11:-1] == list(range(10)) and done[-1] == 0
    assert sum(failed) == 1 and failed[-4] == 1
    assert tp.rates(NOW) == (sum(range(10)) / 10, 0.1)


def test_follower_waits_for_the_log_then_tails_it_through_the_filter(tmp_path):
    path = tmp_path / "djctl.log"
    seen: list[str] = []
    follower = LogFollower(path, LogFilter(proc="worker"), on_line=seen.append, poll=0.02)
    stop = threading.Event()
    thread = threading.Thread(target=follower.run, args=(stop,))
    thread.start()
    try:
        assert "no log yet" in follower.status
        with LogWriter(path) as log:
            log.write("app", "worker.1", "one")
            log.write("app", "mail.1", "not this")
            log.write("djctl", "worker.2", "two")
        wait_for(lambda: len(seen) == 2, message="two worker lines")
        assert follower.status == "following djctl.log"
        assert [line.split(": ", 1)[1] for line in follower.take()] == ["one", "two"]
        assert follower.take() == []
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from djctl.daemon.logs import LogWriter
    total = int(sys.argv[2])
    with LogWriter(Path(sys.argv[1]), max_bytes=10 * 1024 * 1024, backups=5) as log:
        written = n = 0
        pad = "x" * 60
        while written < total:
            message = f"[Worker(host:h pid:1)] Job Touch (id={n}) COMPLETED {pad}"
            log.write("app", "worker.1", message)
            written += len(message) + 50
            n += 1
        log.write("app", "worker.1", "END")
    print(n + 1)
""")


def test_memory_stays_flat_while_the_log_grows_by_100_mb(tmp_path):
    """The follower and its throughput, drained like the screen drains them, keep their
    memory while another process appends 100 MB (through ten rotations)."""
    path = tmp_path / "djctl.log"
    LogWriter(path).close()
    throughput = Throughput(window=120)
    lines = [0]
    ended = threading.Event()

    def on_line(line: str) -> None:
        lines[0] += 1
        throughput.record(line)
        if line.endswith(": END"):
            ended.set()

    follower = LogFollower(path, keep=1000, backlog=200, on_line=on_line, poll=0.02)
    screen: deque[str] = deque(maxlen=1000)  # what the Log widget keeps (max_lines)
    stop = threading.Event()
    tracemalloc.start()
    thread = threading.Thread(target=follower.run, args=(stop,))
    thread.start()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(100 * 1024 * 1024)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        baseline = None
        while not ended.is_set():
            assert time.monotonic() < deadline, "the follower did not reach the end of the log"
            screen.extend(follower.take())
            throughput.series(datetime.now(timezone.utc))
            if baseline is None and lines[0] > 50_000:
                baseline = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
            time.sleep(0.05)
        screen.extend(follower.take())
        current, peak = tracemalloc.get_traced_memory()
    finally:
        stop.set()
        thread.join(10)
        written = int(writer.communicate(timeout=60)[0])
        tracemalloc.stop()
    assert writer.returncode == 0
    assert baseline is not None
    # A follower more than five rotations behind skips ahead (logs.follow's contract); it
    # should not need to, even here.
    assert written > 600_000 and lines[0] >= 0.9 * written
    assert screen[-1].endswith(": END") and len(screen) == 1000
    growth = current - baseline
    assert growth < 1024 * 1024, f"memory grew by {growth / 1e6:.1f} MB while the log grew by 100 MB"
    assert peak - baseline < 4 * 1024 * 1024, f"memory peaked {(peak - baseline) / 1e6:.1f} MB above its start"
