"""examples/django as a user runs it: `manage.py migrate`, `manage.py djctl up` with its Procfile (web and
worker), a real HTTP request that enqueues in a transaction, `djctl top` showing the queue, and a worker
SIGKILLed mid-task whose task runs again and ends SUCCESSFUL."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("django")
httpx = pytest.importorskip("httpx")

from tests.support.commands import ROOT  # noqa: E402 - after the importorskip above
from tests.support.databases import KINDS, fresh_database  # noqa: E402 - after the importorskip above
from tests.support.waiting import wait_for  # noqa: E402 - after the importorskip above

EXAMPLE = ROOT / "examples" / "django"
ROW = re.compile(r"│\s+([a-z]+)\s+(-?\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Shop:
    """A copy of the example project in a temporary folder, on its own database and port."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.dir = tmp_path / "shop"
        shutil.copytree(EXAMPLE, self.dir, ignore=shutil.ignore_patterns("db.sqlite3", "__pycache__", ".djctl"))
        self.port = _free_port()
        procfile = self.dir / "Procfile"
        procfile.write_text(procfile.read_text().replace("$PORT", str(self.port)))
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, SHOP_DATABASE_URL=url, DJ_SLEEP_DELAY="0.2", PYTHONUNBUFFERED="1",
                        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
                        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        for name in ("DJ_DATABASE_URL", "DATABASE_URL", "DJ_APP", "DJ_STATE_DIR", "DJANGO_SETTINGS_MODULE"):
            self.env.pop(name, None)

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=self.dir, env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert not check or done.returncode == 0, f"manage.py {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def answers(self) -> bool:
        try:
            return httpx.get(self.base + "/orders/0").status_code == 404
        except httpx.TransportError:
            return False

    def result(self, result_id: str) -> dict:
        return httpx.get(f"{self.base}/results/{result_id}").json()

    def worker_pid(self) -> int | None:
        rows = json.loads(self.manage("djctl", "ps", "--json").stdout)
        return next((r["pid"] for r in rows if r["name"] == "worker.1" and r["pid"]), None)


@pytest.fixture(params=KINDS)
def shop(request, tmp_path: Path) -> Iterator[Shop]:
    for url in fresh_database(request.param, tmp_path):
        shop = Shop(tmp_path, url)
        try:
            yield shop
        finally:
            shop.manage("djctl", "down", check=False)


def _top_shows(shop: Shop, tmp_path: Path, expected: set[tuple]) -> None:
    """`manage.py djctl top` in a real terminal (tmux) shows ``expected`` Queues rows, then quits."""
    sock = str(tmp_path / "tmux.sock")
    env = dict(shop.env, TERM="xterm-256color")
    # An interactive shell first, then top typed into it (as a user does, and as the
    # console's own terminal test does): the session has its 160x50 size by then.
    subprocess.run(["tmux", "-S", sock, "-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "50", "-s", "top",
                    "-c", str(shop.dir), "bash --noprofile --norc"], env=env, check=True)
    subprocess.run(["tmux", "-S", sock, "send-keys", "-t", "top",
                    f"{sys.executable} manage.py djctl top --refresh 0.2", "Enter"], check=True)
    try:
        def screen() -> str:
            return subprocess.run(["tmux", "-S", sock, "capture-pane", "-p", "-t", "top"], capture_output=True,
                                  text=True, check=False).stdout

        def shown() -> set[tuple]:
            return {(m[1], *map(int, m.groups()[1:])) for m in ROW.finditer(screen())}

        try:
            wait_for(lambda: expected <= shown(), timeout=60, message=f"djctl top to show {expected}")
        except AssertionError as e:
            raise AssertionError(f"{e}; the screen:\n{screen()}") from None
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True, check=False)


def test_the_django_example_end_to_end(shop: Shop, tmp_path: Path) -> None:
    migrated = shop.manage("migrate")
    assert "Applying djctl.0001_djctl_tables... OK" in migrated.stdout

    shop.manage("djctl", "up", "--formation", "web=1", "--formation", "worker=0")
    wait_for(shop.answers, timeout=60, interval=0.2, message="the web process to answer")
    assert httpx.post(shop.base + "/orders", json={"item": "teapot"}).status_code == 400
    made = httpx.post(shop.base + "/orders", json={"item": "teapot", "email": "ada@example.com",
                                                   "packing_seconds": 15})
    assert made.status_code == 201, made.text
    order = made.json()
    assert shop.result(order["receipt_task"])["status"] == "READY"

    if shutil.which("tmux"):
        # queue, priority, ready, scheduled, running, failed: Django's priority 10 is delayed_job's -10.
        _top_shows(shop, tmp_path, {("mail", -10, 1, 0, 0, 0), ("default", 0, 1, 0, 0, 0)})

    shop.manage("djctl", "scale", "worker=1")
    pid = wait_for(shop.worker_pid, timeout=60, interval=0.2, message="worker.1 started")
    wait_for(lambda: shop.result(order["receipt_task"])["status"] == "RUNNING", timeout=60,
             message="the receipt task to be running")
    os.kill(pid, signal.SIGKILL)

    wait_for(lambda: shop.result(order["receipt_task"])["status"] == "SUCCESSFUL", timeout=120, interval=0.2,
             message="the killed worker's task to run again and succeed")
    receipt = shop.result(order["receipt_task"])
    assert receipt["attempts"] == 2 and receipt["errors"] == []
    assert receipt["return_value"] == "Receipt for teapot, sent to ada@example.com"
    wait_for(lambda: shop.result(order["tally_task"])["status"] == "SUCCESSFUL", message="the async tally")
    assert httpx.get(f"{shop.base}/orders/{order['order']}").json() == {
        "id": order["order"], "item": "teapot", "receipt": "Receipt for teapot, sent to ada@example.com",
        "tallied": True}
