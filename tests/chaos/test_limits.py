"""Concurrency limits and throttles under real supervisors: two of them on one database,
a worker SIGKILLed while it holds a key's only slot, a throttle watched by its starts."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest

import djctl
from tests.chaos.conftest import kinds, make_app
from tests.jobs import Gate, Span
from tests.support.rows import count
from tests.support.waiting import wait_for


def spans(path: Path) -> dict[str, tuple[float, float | None]]:
    """label -> (start, end) from the lines tests.jobs.Span wrote; a label started twice fails."""
    found: dict[str, list[float | None]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        what, label, at = line.split()
        if what == "start":
            assert label not in found, f"{label} started twice"
            found[label] = [float(at), None]
        else:
            found[label][1] = float(at)
    return {k: (v[0], v[1]) for k, v in found.items()}  # type: ignore[misc]


@pytest.fixture
def two_hosts(request, tmp_path):
    apps = [make_app(request, tmp_path, name, DJ_HOSTNAME=name) for name in ("alpha", "beta")]
    yield apps
    for a in apps:
        a.kill_everything()


@pytest.mark.parametrize("db_kind", kinds("sqlite", "postgresql", "mysql"), indirect=True)
def test_two_supervisors_run_each_key_one_at_a_time_and_hold_back_no_keyless_job(two_hosts, db_url, tmp_path):
    """Acceptance 1: four workers (two supervisors), 200 jobs over 5 keys with limit 1 and
    100 keyless jobs: never two running at once per key, every job once, the keyless ones
    not held back."""
    path = tmp_path / "spans"
    keyed = [Span(str(path), f"k{i % 5}/{i}", 0.05) for i in range(200)]
    for i in range(5):
        djctl.enqueue_many([j for j in keyed if j.label.startswith(f"k{i}/")], concurrency_key=f"key{i}")
    djctl.enqueue_many([Span(str(path), f"free/{i}") for i in range(100)])  # after the keyed ones
    for a in two_hosts:
        a.run("up", "--formation", "worker=2")
    wait_for(lambda: count(db_url) == 0, 120, message="every job done")
    runs = spans(path)
    assert len(runs) == 300 and all(end is not None for _, end in runs.values())
    for k in range(5):
        ordered = sorted(v for label, v in runs.items() if label.startswith(f"k{k}/"))
        for (_, end), (start, _) in zip(ordered, ordered[1:], strict=False):
            assert start >= end, f"two jobs of key{k} ran at once"  # type: ignore[operator]
    last_free = max(end for label, (_, end) in runs.items() if label.startswith("free/"))  # type: ignore[type-var]
    keyed_starts = sorted(start for label, (start, _) in runs.items() if label.startswith("k"))
    assert last_free < keyed_starts[100], "keyless jobs waited behind keyed ones"
    pids = {p["pid"] for a in two_hosts for p in a.ps()}
    assert len(pids) == 4


@pytest.mark.serial  # a two-second deadline: run alone, after the parallel part of the suite
@pytest.mark.parametrize("db_kind", kinds("sqlite", "postgresql", "mysql"), indirect=True)
def test_a_worker_killed_holding_a_keys_only_slot_gives_it_back_within_two_seconds(request, tmp_path, db_url):
    """Acceptance 3, with the default sleep_delay (5 s): the supervisor releases the claim
    and wakes the idle worker, which starts the next job of the key."""
    app = make_app(request, tmp_path, DJ_SLEEP_DELAY="5")
    try:
        held, nxt = tmp_path / "held", tmp_path / "next"
        djctl.enqueue(Gate(str(held), str(tmp_path / "never")), concurrency_key="only")
        app.run("up", "--formation", "worker=2")
        app.wait_up(2)
        line = wait_for(lambda: held.exists() and held.read_text().split(), 30, message="the slot is held")
        victim = int(line[1])  # the executor's pid: its worker is its parent
        # Ringing the idle worker, which finds the key busy and goes back to sleep for 5 s.
        djctl.enqueue(Span(str(nxt), "next"), concurrency_key="only", priority=-1)
        worker = next(p["pid"] for p in app.ps() if p["pid"] and _parent(victim) == p["pid"])
        killed = time.time()
        os.kill(worker, signal.SIGKILL)
        wait_for(nxt.exists, 2.0, interval=0.01, message="another job of the key started")
        started = spans(nxt)["next"][0]
        assert started >= killed, "a job of the key started while its only slot was held"
    finally:
        app.kill_everything()


def _parent(pid: int) -> int:
    import psutil

    return psutil.Process(pid).ppid()


@pytest.mark.serial  # the starts' windows are wall-clock time: run alone
@pytest.mark.parametrize("db_kind", kinds("sqlite", "postgresql", "mysql"), indirect=True)
def test_a_throttle_of_ten_per_two_seconds_over_four_workers(app, db_url, tmp_path):
    """Acceptance 4: no 2-second window holds more than 10 starts."""
    path = tmp_path / "spans"
    djctl.enqueue_many([Span(str(path), f"t{i}") for i in range(50)], throttle=("api", 10, timedelta(seconds=2)))
    app.run("up", "--formation", "worker=4")
    wait_for(lambda: count(db_url) == 0, 120, message="every throttled job done")
    starts = sorted(start for start, _ in spans(path).values())
    assert len(starts) == 50
    shown = [round(t - starts[0], 3) for t in starts]
    for i, s in enumerate(starts):
        within = [t for t in starts[i:] if t < s + 2.0]
        assert len(within) <= 10, f"{len(within)} starts in the 2 s from {s}: {shown}"
    assert count(db_url, "attempts > 0") == 0
