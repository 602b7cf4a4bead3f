"""Issue 8, acceptance 4: SQLite under contention — 8 workers, the supervisor's heartbeat and
a steady enqueuer in another process for 20 s, some jobs writing to the database
themselves — and no "database is locked" reaches a job, a worker, the supervisor or the
enqueuer; every job runs, once."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from djctl import api
from tests.chaos.conftest import kinds, runners, runs
from tests.support.rows import count, locked
from tests.support.waiting import wait_for

SECONDS = 20.0


def enqueue_steadily(url: str, path: str, seconds: float) -> None:
    """For ``seconds``: a job every ~10 ms, every 5th one a job that enqueues another, every
    20th round a batch of 10. Prints the keys it enqueued (JSON) at the end."""
    import djctl
    from tests.chaos import Record, Spawner

    djctl.configure(database_url=url, app="tests.jobs,tests.chaos")
    keys: list[str] = []
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        i += 1
        if i % 5 == 0:
            djctl.enqueue(Spawner(path, f"s{i}"))
            keys += [f"s{i}", f"s{i}.child"]
        else:
            djctl.enqueue(Record(path, f"r{i}", seconds=0.002))
            keys.append(f"r{i}")
        if i % 20 == 0:
            batch = [Record(path, f"b{i}.{n}") for n in range(10)]
            djctl.enqueue_many(batch)
            keys += [job.key for job in batch]
        time.sleep(0.01)  # the enqueuer's pace: steady load, not a flood
    print(json.dumps(keys))


@pytest.mark.parametrize("db_kind", kinds("sqlite"))
def test_eight_workers_and_a_steady_enqueuer_never_see_database_is_locked(db_kind, app, tmp_path):
    path = tmp_path / "runs.txt"
    app.run("up", "--formation", "worker=8")
    app.wait_up(8, timeout=60)
    code = ("from tests.chaos.test_sqlite_contention import enqueue_steadily as e; "
            f"e({app.db_url!r}, {str(path)!r}, {SECONDS})")
    enqueuer = subprocess.run([sys.executable, "-c", code], cwd=app.dir, env=app.env, capture_output=True,
                              text=True, timeout=SECONDS + 60)
    assert (enqueuer.returncode, enqueuer.stderr) == (0, "")
    keys = json.loads(enqueuer.stdout)
    assert len(keys) > 500

    wait_for(lambda: count(app.db_url) == 0, 90, interval=0.1, message="every job worked off")
    assert sorted(runs(path)) == sorted(keys), "a job was lost"
    assert {k: p for k, p in runners(path).items() if len(p) > 1} == {}, "a job ran twice"
    with api.engine(app.db_url).connect().execution_options(sqlite_read=True) as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM delayed_jobs WHERE last_error IS NOT NULL")).scalar() == 0
    assert len(app.wait_up(8)) == 8
    app.cli("down")
    log = "\n".join(app.log())
    for words in ("database is locked", "Traceback", "FAILED", "unavailable", "OperationalError"):
        assert words not in log, words
    assert not app.log_has(r"Process exited with status [^0]")  # no worker died along the way
    assert locked(app.db_url) == []
