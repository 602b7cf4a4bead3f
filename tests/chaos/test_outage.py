"""Issue 8, acceptance 3: the database goes away for 10 s mid-run (PostgreSQL behind a TCP
proxy that resets every connection and refuses new ones) and comes back.

What is asserted, precisely:
- the supervisor and every worker survive it: the same pids before and after, all up;
- they reconnect by themselves: the work goes on after the cut without anyone's help;
- no job is lost: every job ran, none failed, the table ends empty, nothing stays locked;
- no completion is recorded twice: the workers log each job id COMPLETED exactly once;
- no job ran twice. A worker keeps its claims through the outage (nothing releases the
  claims of a live worker), so the only runs that could repeat would be of jobs whose
  claim was in flight when the connection dropped; a claim that never committed was
  never run, and one that committed unseen is given back unstarted (see the second test).
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

import djctl
from djctl import api
from djctl.worker import identity
from tests.chaos import Record
from tests.chaos.conftest import completed_ids, kinds, make_app, runners, runs
from tests.support.rows import count, locked
from tests.support.waiting import wait_for

TOTAL = 2000
OUTAGE = 10.0



@pytest.fixture
def behind(request, tmp_path, proxy):
    """An application whose processes reach the database through ``proxy`` only; the test
    itself talks to the database directly."""
    url = request.getfixturevalue("db_url")
    a = make_app(request, tmp_path, DJ_DATABASE_URL=proxy.url(url))
    yield a
    a.kill_everything()


@pytest.mark.parametrize("db_kind", kinds("postgresql"))
def test_a_ten_second_outage_loses_nothing_and_repeats_nothing(db_kind, behind, proxy, tmp_path):
    app = behind
    path = tmp_path / "runs.txt"
    app.run("up", "--formation", "worker=4")
    before = app.wait_up(4)
    supervisor = app.supervisor_pid()
    djctl.enqueue_many([Record(str(path), str(i), seconds=0.004) for i in range(TOTAL)])
    wait_for(lambda: count(app.db_url) < TOTAL - 200, 60, message="the work to be under way")

    proxy.cut()
    cut_at = len(app.log())
    left = count(app.db_url)
    # Everyone notices: each worker says so, and the supervisor's heartbeat too.
    def noticed() -> set[str]:
        return set(re.findall(r"pid:(\d+)\)\] database unavailable", "\n".join(app.log()[cut_at:])))

    wait_for(lambda: len(noticed()) == 4, OUTAGE, message="every worker to notice the outage")
    wait_for(lambda: app.log_has(r"djctl\[djctl\]: Database unavailable"), OUTAGE,
             message="the supervisor to notice the outage")
    stalled = count(app.db_url)
    # Held at the cut: nothing moves in the database while it is unreachable.
    wait_for(lambda: proxy.refused >= 4, OUTAGE, message="reconnection attempts to be refused")
    assert count(app.db_url) == stalled and stalled <= left
    proxy.hold(OUTAGE)
    proxy.restore()

    wait_for(lambda: count(app.db_url) == 0, 90, interval=0.1, message="every job worked off after the outage")
    assert app.wait_up(4) == before, "a worker was restarted"
    assert app.supervisor_pid() == supervisor
    wait_for(lambda: app.log_has(r"djctl\[djctl\]: Database available again"), 30,
             message="the supervisor to reconnect")
    seen = runs(path)
    assert set(seen) == {str(i) for i in range(TOTAL)}, "a job was lost"
    assert {k: p for k, p in runners(path).items() if len(p) > 1} == {}, "a job ran twice"
    # COMPLETED is said after the outcome is recorded, and reaches the log through the supervisor.
    done = wait_for(lambda: (ids := completed_ids(app)) and len(ids) >= TOTAL and ids, 30,
                    message="every completion to be logged")
    assert len(done) == TOTAL and set(done.values()) == {1}, "a completion was recorded twice"
    assert not app.log_has(r"FAILED")
    app.cli("down")
    assert locked(app.db_url) == []
    assert app.ours() == []


@pytest.mark.parametrize("db_kind", kinds("postgresql"))
def test_a_claim_committed_unseen_during_an_outage_is_given_back_at_once(db_kind, behind, proxy, tmp_path):
    """The connection drops after the server committed a claim but before the worker heard
    of it: the rows are locked by a worker that does not know it holds them. They must
    not wait for max_run_time (4 hours) to run."""
    app = behind
    path = tmp_path / "runs.txt"
    app.run("up", "--formation", "worker=1")
    pid = app.wait_up(1)["worker.1"]
    me = identity.format(identity.hostname(), pid)
    proxy.cut()
    wait_for(lambda: app.log_has(rf"pid:{pid}\)\] database unavailable"), 15, message="the worker to notice")
    ids = djctl.enqueue_many([Record(str(path), str(i)) for i in range(3)])
    with djctl.engine().begin() as conn:  # what the lost claim left behind
        conn.execute(text("UPDATE delayed_jobs SET locked_by = :me, locked_at = :now, attempts = 1"),
                     {"me": me, "now": api.utc_naive(api.now())})
    assert [job for job, _ in locked(app.db_url)] == ids
    proxy.restore()
    wait_for(lambda: count(app.db_url) == 0, 30, message="the stranded claims to be given back and run")
    assert sorted(runs(path)) == ["0", "1", "2"]
    assert app.up_pids() == {"worker.1": pid}
    app.cli("down")


@pytest.mark.parametrize("db_kind", kinds("postgresql"))
def test_an_idle_worker_listens_again_as_soon_as_the_database_answers(db_kind, request, tmp_path, proxy):
    """LISTEN's connection dies with the others in an outage. Polling keeps the work going
    meanwhile, and the first statement that succeeds afterwards brings LISTEN back."""
    url = request.getfixturevalue("db_url")
    app = make_app(request, tmp_path, DJ_DATABASE_URL=proxy.url(url), DJ_SLEEP_DELAY="1")
    try:
        app.run("up", "--formation", "worker=1")
        pid = app.wait_up(1)["worker.1"]

        def listening() -> int:
            with djctl.engine().connect() as conn:
                return conn.scalar(text("SELECT count(*) FROM pg_stat_activity "
                                        "WHERE datname = current_database() AND query = 'LISTEN djctl_jobs'"))

        wait_for(lambda: listening() == 1, message="the worker to listen")
        proxy.cut()
        wait_for(lambda: app.log_has(rf"pid:{pid}\)\] wake-ups lost"), 15, message="the worker to notice")
        wait_for(lambda: listening() == 0, message="its LISTEN connection to end")
        proxy.restore()
        wait_for(lambda: app.log_has(rf"pid:{pid}\)\] wake-ups are back"), 15, message="LISTEN again")
        assert listening() == 1
        path = tmp_path / "runs.txt"
        djctl.enqueue(Record(str(path), "after"))
        wait_for(lambda: count(app.db_url) == 0, 15, message="the job to run")
        assert runs(path) == {"after": 1}
        assert app.up_pids() == {"worker.1": pid}
        app.cli("down")
    finally:
        app.kill_everything()
