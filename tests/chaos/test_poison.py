"""Issue 8, acceptance 5: poison jobs — one that segfaults, one that exhausts its memory
under a limit, one that never returns — each end failed after their attempts (two, set
on the job classes), while the other jobs flow and the formation stays up."""

from __future__ import annotations

import pytest
from sqlalchemy import text

import djctl
from djctl import api
from tests.chaos import Forever, Hog, Record, Segfault
from tests.chaos.conftest import kinds, runs
from tests.support.rows import count
from tests.support.waiting import wait_for


def failed_rows(url: str) -> dict[int, dict]:
    with api.engine(url).connect().execution_options(sqlite_read=True) as conn:
        rows = conn.execute(text("SELECT id, attempts, last_error FROM delayed_jobs WHERE failed_at IS NOT NULL"))
        return {r.id: dict(r._mapping) for r in rows}


@pytest.mark.parametrize("db_kind", kinds("sqlite", "postgresql"))
def test_poison_jobs_end_failed_after_their_attempts_and_the_rest_flows(db_kind, app, tmp_path):
    path = tmp_path / "runs.txt"
    poison = tmp_path / "poison.txt"
    app.run("up", "--formation", "worker=2")
    workers = app.wait_up(2)
    segfault = djctl.enqueue(Segfault(str(poison)))
    hog = djctl.enqueue(Hog(str(poison)))
    forever = djctl.enqueue(Forever(str(poison)))
    total = 300
    djctl.enqueue_many([Record(str(path), str(i), seconds=0.005) for i in range(total)])

    wait_for(lambda: len(failed_rows(app.db_url)) == 3, 60, interval=0.1, message="the three poison jobs to fail")
    wait_for(lambda: count(app.db_url) == 3, 60, message="the other jobs to be worked off")
    rows = failed_rows(app.db_url)
    assert {i: r["attempts"] for i, r in rows.items()} == {segfault: 2, hog: 2, forever: 2}
    assert "killed by signal 11 (SIGSEGV)" in rows[segfault]["last_error"]
    # MemoryError, or the executor itself dying of it: a failed attempt either way.
    assert rows[hog]["last_error"].startswith(("MemoryError", "job process "))
    assert "max_run_time" in rows[forever]["last_error"]
    # Each ran exactly its two attempts; no other job was lost or ran twice.
    assert runs(poison) == {"segfault": 2, "hog": 2, "forever": 2}
    seen = runs(path)
    assert set(seen) == {str(i) for i in range(total)} and set(seen.values()) == {1}

    # Only executors died: the workers and the supervisor never did.
    assert app.wait_up(2) == workers
    assert not app.log_has(r"Process exited")
    assert app.log_has(rf"Job Segfault \(id={segfault}\) FAILED permanently because of 2 consecutive failures")
    app.cli("down")
    assert app.ours() == []
