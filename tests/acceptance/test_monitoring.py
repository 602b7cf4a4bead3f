"""Monitoring as an operator sets it up: a real Prometheus (Debian's package) scraping
``djctl up --metrics`` every second, the shipped alert rules and dashboard, promtool's
checks, and the endpoint's refusals (addresses, methods)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from datetime import timedelta

import pytest

import djctl
from djctl.worker.identity import hostname
from tests.jobs import Overridden, Touch
from tests.support.app import heavy, running_app
from tests.support.monitoring import EXAMPLES, Prometheus, free_port, http, need
from tests.support.rows import count
from tests.support.waiting import wait_for

PROCFILE = "worker: djctl work --queues mail,special,default\n"


@pytest.fixture
def app(db_kind, request, tmp_path):
    heavy(db_kind)
    yield from running_app(request, tmp_path, procfile=PROCFILE)


@pytest.fixture
def other_host(app, request, tmp_path):
    """A second supervisor on the same database, as if on another host."""
    yield from running_app(request, tmp_path, name="other", procfile=PROCFILE, DJ_HOSTNAME="other-host")


@pytest.fixture
def local_app(db_kind, request, tmp_path):
    """An application on SQLite alone (what it shows does not depend on the database), with
    a process type that crashes at once (scaled to 0 until a test scales it)."""
    if db_kind != "sqlite":
        pytest.skip("the endpoint does not depend on the database: once is enough")
    yield from running_app(request, tmp_path, procfile="worker: djctl work\nbad: sh -c 'exit 3'\n")


@pytest.fixture
def prometheus_for(tmp_path):
    started: list[Prometheus] = []

    def start(*targets: str) -> Prometheus:
        started.append(Prometheus(tmp_path / "prometheus", *targets))
        return started[-1]

    yield start
    for p in started:
        p.stop()


def test_a_real_prometheus_scrapes_depths_latency_and_counters_that_match_the_database(app, other_host,
                                                                                         prometheus_for, tmp_path):
    """Acceptance 1, with two supervisors (two host names) on one database: queue numbers
    are the database's from either, per-process numbers each host's own."""
    port, other_port = free_port(), free_port()
    app.run("up", "--metrics", f"127.0.0.1:{port}")
    other_host.run("up", "--metrics", f"127.0.0.1:{other_port}")
    app.wait_up(1)
    other_host.wait_up(1)
    prom = prometheus_for(f"127.0.0.1:{port}", f"127.0.0.1:{other_port}")
    here = hostname()

    runs = str(tmp_path / "runs.txt")
    now = djctl.now()
    djctl.enqueue_many([Touch(runs, str(i)) for i in range(5)], queue="mail")
    djctl.enqueue(Overridden())                                                  # fails once, retried in 1 h
    djctl.enqueue_many([Touch(runs, "later")] * 2, queue="mail", run_at=now + timedelta(days=1))
    djctl.enqueue_many([Touch(runs, f"idle{i}") for i in range(3)], queue="idle",
                       run_at=now - timedelta(seconds=300))                    # no worker takes "idle"
    wait_for(lambda: count(app.db_url, "locked_at IS NULL AND attempts = 1") == 1
             and count(app.db_url) == 6, 30, message="the mail jobs done and Overridden failed once")

    wait_for(lambda: prom.value('sum(djctl_jobs_completed_total{queue="mail",job_class="Touch"})') == 5, 30,
             message="Prometheus to have the five completions")
    assert {dict(k)["host"] for k in prom.query("djctl_jobs_completed_total")} <= {here, "other-host"}
    assert prom.value('sum(djctl_jobs_failed_total{job_class="Overridden",queue="special",permanent="false"})') == 1
    assert prom.value("sum(djctl_jobs_failed_total)") == 1
    assert prom.value('sum(djctl_job_run_seconds_count{job_class="Touch"})') == 5
    assert prom.value('sum(djctl_job_wait_seconds_count{queue="mail"})') == 5
    assert prom.query('djctl_processes{type="worker",state="up"}') == {
        (("host", here), ("state", "up"), ("type", "worker")): 1.0,
        (("host", "other-host"), ("state", "up"), ("type", "worker")): 1.0}

    # Queue depths: what Prometheus holds is what the database says (djctl stats --json).
    def depths_match() -> bool:
        database = {}
        for row in json.loads(app.cli("stats", "--json").stdout):
            for state in ("ready", "scheduled", "running", "failed"):
                database[(row["queue"] or "default", str(row["priority"]), state)] = float(row[state])
        for target in (port, other_port):  # each supervisor says what the database says
            scraped = {(dict(k)["queue"], dict(k)["priority"], dict(k)["state"]): v
                       for k, v in prom.query(f'djctl_jobs{{instance="127.0.0.1:{target}"}}').items()}
            if scraped != database:
                return False
        return True

    wait_for(depths_match, 30, message="Prometheus's djctl_jobs to match djctl stats --json")
    assert prom.value('max(djctl_jobs{queue="idle",state="ready"})') == 3
    assert prom.value('max(djctl_jobs{queue="mail",state="scheduled"})') == 2
    assert prom.value('max(djctl_jobs{queue="special",state="scheduled"})') == 1

    # Queue latency: the age of the oldest ready job, by the database's clock.
    age = prom.value(f'djctl_queue_latency_seconds{{queue="idle",instance="127.0.0.1:{port}"}}')
    assert age is not None and 300 <= age < 300 + (djctl.now() - now).total_seconds() + 5
    assert prom.value('max(djctl_queue_latency_seconds{queue="mail"})') == 0
    assert prom.value("min(djctl_database_up)") == 1
    assert prom.value(f'djctl_heartbeat_timestamp_seconds{{host="{here}"}}') > 0

    # A worker killed is restarted, and counted by its own host's supervisor.
    os.kill(next(iter(app.up_pids().values())), signal.SIGKILL)
    wait_for(lambda: prom.value(f'djctl_process_restarts_total{{type="worker",host="{here}"}}') == 1, 30,
             message="the restart counted in Prometheus")
    assert prom.value('djctl_process_restarts_total{type="worker",host="other-host"}') == 0

    # promtool accepts the exposition and the shipped rules; Prometheus loaded and evaluates them.
    code, exposition = http(f"http://127.0.0.1:{port}/metrics")
    assert code == 200
    checked = subprocess.run([need("promtool"), "check", "metrics"], input=exposition, capture_output=True,
                             text=True, timeout=30)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr

    def rules_evaluated() -> list[dict]:
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) else []

    rules = wait_for(rules_evaluated, 30, message="the alert rules evaluated")
    assert len(rules) == 7 and all(r["health"] == "ok" for r in rules), rules

    # Every query of the shipped Grafana dashboard runs on Prometheus.
    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        assert prom.api("query", query=expr)["resultType"] == "vector", expr
    app.run("down")
    other_host.run("down")


def test_promtool_accepts_the_shipped_alert_rules_and_their_tests():
    """Acceptance 1: promtool check rules, and promtool test rules firing each alert."""
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        out = subprocess.run([need("promtool"), *args], cwd=EXAMPLES, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "SUCCESS" in out.stdout


@pytest.mark.parametrize("address, says", [
    ("nonsense", "bad metrics address 'nonsense'; use HOST:PORT, e.g. 127.0.0.1:9187"),
    ("127.0.0.1:99999", "bad metrics address '127.0.0.1:99999'; use HOST:PORT"),
    ("192.0.2.1:9187", "metrics address '192.0.2.1:9187' is not a loopback address; serving metrics beyond "
                       "this host needs metrics_remote = true (DJ_METRICS_REMOTE=1)"),
    ("0.0.0.0:9187", "is not a loopback address"),
    ("no.such.host.invalid:9187", "is no address of this host"),
])
def test_a_bad_or_remote_metrics_address_is_one_line_and_starts_nothing(address, says, local_app):
    """Acceptance 5."""
    app = local_app
    out = app.run("up", "--metrics", address, ok=False)
    assert out.returncode == 2, out
    assert len(out.stderr.splitlines()) == 1 and says in out.stderr, out.stderr
    assert not (app.state / "djctl.pid").exists() and not app.ours()
    # The setting is checked the same way.
    app.env["DJ_METRICS"] = address
    out = app.run("up", ok=False)
    assert out.returncode == 2 and says in out.stderr, out


def test_only_get_is_answered_remote_needs_the_setting_and_a_taken_port_is_one_line(local_app):
    """Acceptance 5: GET only; 0.0.0.0 with metrics_remote; a port in use."""
    app = local_app
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        out = app.run("up", "--metrics", f"127.0.0.1:{busy}", ok=False)
        assert out.returncode == 1, out
        assert out.stderr.strip().endswith(f"cannot serve metrics on 127.0.0.1:{busy}: Address already in use")
        assert len(out.stderr.splitlines()) == 1
    wait_for(lambda: not app.ours(), 10, message="the failed supervisor gone")

    port = free_port()
    app.env["DJ_METRICS_REMOTE"] = "1"
    app.run("up", "--metrics", f"0.0.0.0:{port}")
    base = f"http://127.0.0.1:{port}"
    assert http(f"{base}/healthz") == (200, "ok\n")
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        assert http(f"{base}/metrics", method=method) == (405, "only GET is answered here\n"), method
    assert http(f"{base}/metrics", method="HEAD")[0] == 405
    assert http(f"{base}/nothing")[0] == 404
    app.run("down")


@pytest.mark.serial  # a wall-clock window (2 s): run alone, after the parallel part of the suite
def test_readyz_and_liveness_follow_the_formation(local_app):
    """Acceptance 2: /readyz is 503 within 2 s while the formation is not up (a type that
    crashes), 200 again once it is; /healthz/<type or process> says which process is down."""
    app = local_app
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app.run("up", "--metrics", f"127.0.0.1:{port}", "--formation", "worker=1 bad=0")
    wait_for(lambda: http(f"{base}/readyz")[0] == 200, 30, message="/readyz 200")
    assert http(f"{base}/healthz/worker")[0] == 200
    assert http(f"{base}/healthz/worker.1")[1].startswith("worker.1 up (pid ")
    assert http(f"{base}/healthz/bad") == (503, "bad is scaled to 0\n")
    assert http(f"{base}/healthz/web")[0] == 404

    app.cli("scale", "bad=1")
    wait_for(lambda: http(f"{base}/readyz", timeout=1)[0] == 503, 2.0, interval=0.05,
             message="/readyz 503 within 2 s")
    code, reason = http(f"{base}/readyz")
    assert code == 503 and reason.startswith("the formation is not up: 1 of 2 processes up (bad.1 "), reason
    wait_for(lambda: http(f"{base}/healthz/bad.1")[1] == "bad.1 crashed\n", 15, message="bad.1 crashed")
    assert http(f"{base}/healthz/bad")[0] == 503
    assert http(f"{base}/healthz/worker")[0] == 200
    assert http(f"{base}/healthz") == (200, "ok\n")

    app.cli("scale", "bad=0")
    wait_for(lambda: http(f"{base}/readyz")[0] == 200, 15, message="/readyz 200 again")
    app.run("down")
