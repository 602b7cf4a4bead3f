"""Two supervisors under different host names on one PostgreSQL database: each sees the
other's processes, and recovers the other's claims when their leases expire."""

from __future__ import annotations

import json

import pytest

import djctl
from tests.jobs import Touch
from tests.support.app import App
from tests.support.rows import job_row, locked, registered
from tests.support.waiting import wait_for

TIMEOUT = 2.0


@pytest.fixture
def hosts(db_kind, request, tmp_path):
    if db_kind != "postgresql":
        pytest.skip("two hosts sharing a database: PostgreSQL")
    url = request.getfixturevalue("db_url")
    env = request.getfixturevalue("djctl_env")
    apps = {
        name: App(tmp_path / name, env, url, procfile=f"worker: djctl work --queues {name}\n",
                  DJ_HOSTNAME=name, DJ_HEARTBEAT_TIMEOUT=str(TIMEOUT), DJ_GRACE_PERIOD="1")
        for name in ("alpha", "beta")
    }
    yield apps
    for a in apps.values():
        a.kill_everything()


def test_ps_all_hosts_and_recovery_after_heartbeat_timeout(hosts, tmp_path):
    """Acceptance 5."""
    alpha, beta = hosts["alpha"], hosts["beta"]
    alpha.run("up", "--formation", "worker=2")
    beta.run("up")
    alpha_pids = alpha.wait_up(2)
    beta_pid = beta.wait_up(1)["worker.1"]
    wait_for(lambda: len(registered(alpha.db_url)) == 3, 10, message="both hosts heartbeating")

    listing = beta.cli("ps", "--all-hosts").stdout
    assert "=== alpha: worker: djctl work --queues alpha (2)" in listing
    assert "=== beta: worker: djctl work --queues beta (1)" in listing
    rows = json.loads(alpha.cli("ps", "--all-hosts", "--json").stdout)
    assert sorted((r["host"], r["name"], r["pid"]) for r in rows) == sorted(
        [("alpha", n, p) for n, p in alpha_pids.items()] + [("beta", "worker.1", beta_pid)])

    path = str(tmp_path / "runs.txt")
    a_job = djctl.enqueue(Touch(path, "a", seconds=120), queue="alpha")
    b_job = djctl.enqueue(Touch(path, "b", seconds=120), queue="beta")
    wait_for(lambda: len(locked(alpha.db_url)) == 2, message="both jobs claimed")
    a_holder = dict(locked(alpha.db_url))[a_job]
    assert a_holder.startswith("host:alpha pid:")

    alpha.kill_everything()  # SIGKILL to the supervisor, its workers and their children at once
    wait_for(lambda: job_row(alpha.db_url, a_job)["locked_by"] is None, TIMEOUT + 10,
             message="beta to release alpha's claim once its lease expired")
    row = job_row(alpha.db_url, a_job)
    assert row["failed_at"] is None and "lease expired" in row["last_error"]
    # beta's own job runs on: its worker renews the lease on it.
    assert dict(locked(alpha.db_url))[b_job] == f"host:beta pid:{beta_pid}"
    wait_for(lambda: {r["host"] for r in registered(alpha.db_url)} == {"beta"}, 10,
             message="beta to remove alpha's silent rows")
    beta.cli("down")  # its worker is mid-job: SIGKILLed after the grace period, claim released
    assert registered(alpha.db_url) == []
    assert locked(alpha.db_url) == []
