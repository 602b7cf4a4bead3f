"""The supervisor's log followed while another process writes and rotates it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

from djctl.daemon.logs import LogFilter, LogWriter, follow
from tests.support.logs import consume_until, files_oldest_first, messages, take, ticking_clock


def run_writer(path: Path, body: str) -> subprocess.Popen:
    """Start a separate Python process that writes the log through a LogWriter `w`."""
    code = "from pathlib import Path\nfrom djctl.daemon.logs import LogWriter\n" + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code, str(path)])


def numbers(lines: list[str]) -> list[int]:
    return [int(m.split()[0][2:]) for m in messages(lines)]


def test_follow_sees_another_process_write_across_rotations(tmp_path, stop):
    path = tmp_path / "log"
    count = 5_000
    with LogWriter(path, clock=ticking_clock()) as w:
        w.write("djctl", "djctl", "n=-1 ready")
    lines = follow(path, LogFilter(), n=1, stop=stop, poll=0.01)
    assert numbers(take(lines, 1)) == [-1]  # the follower holds the file before writing starts
    writer = run_writer(
        path,
        f"""
        import sys
        with LogWriter(Path(sys.argv[1]), max_bytes=20_000, backups=100) as w:
            for i in range({count}):
                w.write("app", "worker.%d" % (i % 4 + 1), "n=%d ".ljust(60, ".") % i)
            w.write("djctl", "djctl", "n={count} end")
        """,
    )
    try:
        seen = numbers(list(consume_until(lines, "end")))
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    assert len(files_oldest_first(path)) > 10  # it did rotate, many times
    assert seen == list(range(count + 1))


def test_follow_memory_stays_flat_while_the_log_grows(tmp_path, stop):
    path = tmp_path / "log"
    with LogWriter(path) as w:
        w.write("app", "worker.1", "ready")
    lines = follow(path, LogFilter(proc="worker"), n=1, stop=stop, poll=0.01)
    assert messages(take(lines, 1)) == ["ready"]  # the follower holds the file
    tracemalloc.start()
    try:
        writer = run_writer(
            path,
            """
            import sys
            body = "x" * 1000
            with LogWriter(Path(sys.argv[1]), max_bytes=4 * 1024 * 1024, backups=10) as w:
                for i in range(24_000):  # ~25 MB
                    w.write("app", "worker.%d" % (i % 2 + 1), body)
                    w.write("djctl", "djctl", "filtered out")
                w.write("app", "worker.1", "last")
            """,
        )
        seen = sum(1 for _ in consume_until(lines, "last"))
        writer.wait(timeout=60)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert writer.returncode == 0
    assert seen == 24_001
    assert peak < 3 * 1024 * 1024, f"follow peaked at {peak} bytes while ~25 MB flowed"
