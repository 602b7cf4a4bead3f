"""The console's log tail and throughput: what they count, in one process."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from djctl.daemon.logs import LogFilter, LogWriter
from djctl.tui.logtail import LogFollower, Throughput
from tests.support.waiting import wait_for

NOW = datetime(2026, 11, 22, 10, 4, 5, tzinfo=timezone.utc)


def job_event(at: datetime, outcome: str, proc: str = "worker.1") -> dict:
    return {"event": "completed" if outcome == "done" else outcome, "job_id": 7, "class": "Touch", "queue": None,
            "attempts": 0, "run_time": 0.01, "ts": at.isoformat(timespec="microseconds"), "process": proc, "host": "h"}


def test_throughput_counts_job_events_by_their_own_time():
    tp = Throughput(window=60)
    for s in range(10):
        for _ in range(s):
            tp.record(job_event(NOW - timedelta(seconds=10 - s), "done"))
    tp.record(job_event(NOW - timedelta(seconds=3), "failed"))
    tp.record(job_event(NOW - timedelta(seconds=3), "failed_permanently"))
    tp.record(job_event(NOW - timedelta(minutes=5), "done"))  # older than the window
    tp.record({"event": "started", "ts": NOW.isoformat()})
    tp.record({"event": "completed", "ts": "yesterday"})
    done, failed = tp.series(NOW)
    assert len(done) == 60 and done[-11:-1] == list(range(10)) and done[-1] == 0
    assert sum(failed) == 2 and failed[-4] == 2
    assert tp.rates(NOW) == (sum(range(10)) / 10, 0.2)


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
