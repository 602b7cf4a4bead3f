"""The console's log tail keeps flat memory while another process grows the log by 100 MB."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections import deque
from datetime import datetime, timezone

from djctl.daemon.logs import LogWriter
from djctl.tui.logtail import LogFollower, Throughput
from tests.support.commands import ROOT

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
