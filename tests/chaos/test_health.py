"""The supervisor's probes while the database goes away: ``/readyz`` turns 503 within 2 s
of a cut (the processes reach the database through a proxy the test controls) and 200
again after; on a database that holds every byte (a silent partition) no probe waits on
it, and ``/metrics`` waits at most its timeout."""

from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import kinds, make_app
from tests.support.monitoring import free_port, http, status
from tests.support.waiting import wait_for

# Each probe is asked with this client timeout: an answer that took longer fails the test.
PROBE_TIMEOUT = 1.0



@pytest.fixture
def monitored(request, tmp_path, proxy):
    """An application under ``djctl up --metrics`` whose processes reach the database
    through ``proxy`` only; (app, base URL)."""
    url = request.getfixturevalue("db_url")
    app = make_app(request, tmp_path, DJ_DATABASE_URL=proxy.url(url))
    port = free_port()
    app.run("up", "--metrics", f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    yield app, base
    proxy.thaw()
    proxy.restore()
    app.kill_everything()


def probe(url: str) -> tuple[int, str]:
    """A probe as Kubernetes asks it: an answer slower than PROBE_TIMEOUT raises."""
    return http(url, timeout=PROBE_TIMEOUT)


@pytest.mark.serial  # a wall-clock window (2 s): run alone, after the parallel part of the suite
@pytest.mark.parametrize("db_kind", kinds("postgresql", "mysql"))
def test_readyz_turns_503_within_two_seconds_of_a_cut_and_200_after(db_kind, monitored, proxy):
    """Acceptance 2: the database goes away (every connection reset, new ones refused)."""
    app, base = monitored
    wait_for(lambda: status(f"{base}/readyz") == 200, 30, message="/readyz 200 once the formation is up")

    proxy.cut()
    wait_for(lambda: probe(f"{base}/readyz")[0] == 503, 2.0, interval=0.05,
             message="/readyz 503 within 2 s of the cut")
    code, reason = probe(f"{base}/readyz")
    assert code == 503 and reason.startswith("the database has not answered for "), reason
    assert len(reason.splitlines()) == 1
    assert probe(f"{base}/healthz") == (200, "ok\n")  # the loop itself is alive
    assert probe(f"{base}/healthz/worker.1")[0] == 200
    assert "djctl_database_up{" in http(f"{base}/metrics", timeout=10)[1]

    proxy.restore()
    wait_for(lambda: probe(f"{base}/readyz")[0] == 200, 15, message="/readyz 200 again after the database is back")
    assert probe(f"{base}/readyz")[1].startswith("ok: 1 of 1 processes up")


@pytest.mark.serial
@pytest.mark.parametrize("db_kind", kinds("postgresql"))
def test_no_probe_waits_on_a_database_that_holds_every_byte(db_kind, monitored, proxy):
    """Acceptance 2: a slow database (the proxy holds every byte, both ways) never holds a
    probe longer than its timeout; /readyz says 503 within 2 s, /metrics answers within
    its own timeout with djctl_queue_up 0."""
    app, base = monitored
    wait_for(lambda: status(f"{base}/readyz") == 200, 30, message="/readyz 200 once the formation is up")

    proxy.freeze()
    frozen_at = time.monotonic()
    answers = []
    # Probes asked over 3 s, each under PROBE_TIMEOUT (probe() raises otherwise).
    while time.monotonic() - frozen_at < 3.0:
        answers.append((time.monotonic() - frozen_at, probe(f"{base}/readyz")[0], probe(f"{base}/healthz")[0]))
        time.sleep(0.05)
    assert all(alive == 200 for _, _, alive in answers), answers
    turned = [at for at, ready, _ in answers if ready == 503]
    assert turned and turned[0] <= 2.0, answers
    assert all(ready == 503 for at, ready, _ in answers if at > turned[0]), answers

    code, body = http(f"{base}/metrics", timeout=10)  # the queue read waits 5 s at most
    assert code == 200 and "djctl_queue_up 0.0" in body
    assert 'djctl_database_up{host="' in body and '"} 0.0' in body.split("djctl_database_up{", 1)[1].split("\n")[0]

    proxy.thaw()
    wait_for(lambda: probe(f"{base}/readyz")[0] == 200, 20, message="/readyz 200 again once bytes flow")
