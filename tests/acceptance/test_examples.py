"""The examples run as a user runs them (issue 13): the app started for real on a free port,
real HTTP requests, then ``djctl workoff``, and the effect seen through the app again."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.commands import ROOT, djctl_cmd
from tests.support.waiting import wait_for

httpx = pytest.importorskip("httpx")
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def example_env(db_url: str, app: str) -> dict[str, str]:
    env = dict(os.environ, DJ_DATABASE_URL=db_url, DJ_APP=app, DJ_SLEEP_DELAY="0.2", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def serve(command: list[str], cwd: Path, env: dict, port: int, tmp_path: Path, probe: str) -> Iterator[str]:
    """Start the app, yield its base URL once ``probe`` answers (any status), stop it after."""
    base = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)

    def answers() -> bool:
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        try:
            return httpx.get(base + probe) is not None
        except httpx.TransportError:
            return False

    try:
        wait_for(answers, timeout=30, interval=0.1, message=f"the app to answer on {base}")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def workoff(cwd: Path, env: dict) -> str:
    done = subprocess.run(djctl_cmd("workoff"), cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def fastapi_app(db_kind, db_url, tmp_path) -> Iterator[tuple[str, Path, dict]]:
    if db_kind == "mysql":
        pytest.skip("the FastAPI example's async drivers are aiosqlite and psycopg")
    cwd, env, port = EXAMPLES / "fastapi", example_env(db_url, "jobs"), free_port()
    command = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)]
    for base in serve(command, cwd, env, port, tmp_path, probe="/health"):
        yield base, cwd, env


def test_fastapi_signup_enqueues_an_async_job_that_a_worker_runs(fastapi_app):
    base, cwd, env = fastapi_app
    made = httpx.post(base + "/signup", json={"email": "ada@example.com"})
    assert made.status_code == 201, made.text
    user = made.json()["user"]
    refused = httpx.post(base + "/signup", json={"email": "not-an-address"})
    assert refused.status_code == 400
    assert httpx.get(f"{base}/users/{user}").json()["welcomed"] is False
    assert workoff(cwd, env).splitlines()[-1].startswith("1 jobs processed"), "the refused signup's job was rolled back"
    assert httpx.get(f"{base}/users/{user}").json() == {"id": user, "email": "ada@example.com", "welcomed": True}


@pytest.fixture
def flask_app(db_url, tmp_path) -> Iterator[tuple[str, Path, dict]]:
    cwd, env, port = EXAMPLES / "flask", example_env(db_url, "app"), free_port()
    command = [sys.executable, "-m", "flask", "--app", "app", "run", "--host", "127.0.0.1", "--port", str(port)]
    for base in serve(command, cwd, env, port, tmp_path, probe="/orders/0"):
        yield base, cwd, env


def test_flask_order_delays_a_model_method_that_a_worker_runs(flask_app):
    base, cwd, env = flask_app
    made = httpx.post(base + "/orders", json={"item": "teapot"})
    assert made.status_code == 201, made.text
    order = made.json()["order"]
    assert httpx.post(base + "/orders", json={}).status_code == 400
    assert httpx.get(f"{base}/orders/{order}").json()["status"] == "new"
    assert workoff(cwd, env).splitlines()[-1].startswith("1 jobs processed"), "the refused order's job was rolled back"
    assert httpx.get(f"{base}/orders/{order}").json() == {"id": order, "item": "teapot", "status": "shipped by post"}
