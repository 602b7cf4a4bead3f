"""What the monitoring tests share: a free loopback port, plain HTTP requests to a
supervisor's endpoint, and a real Prometheus server (Debian's ``prometheus``) run on
loopback for one test. No tests here."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support.waiting import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "monitoring"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of one request; an HTTP error status is an answer, not a failure."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def status(url: str, timeout: float = 5.0) -> int | None:
    """The status of a GET of ``url``, or None when nothing answers (yet)."""
    try:
        return http(url, timeout=timeout)[0]
    except OSError:
        return None


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian's prometheus package; .ci/run installs it)")
    return path


class Prometheus:
    """A Prometheus server on a free loopback port scraping ``targets`` every second, with
    the shipped alert rules loaded; its data in ``directory``."""

    def __init__(self, directory: Path, *targets: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        shutil.copy(EXAMPLES / "alerts.yml", directory / "alerts.yml")
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "rule_files: [alerts.yml]\n"
            f"scrape_configs:\n  - job_name: djctl\n    static_configs:\n      - targets: {list(targets)}\n")
        self.log = (directory / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [need("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: status(f"{self.url}/-/ready") == 200, 60, interval=0.2, message="Prometheus to be ready")

    def api(self, path: str, **params: str) -> dict:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        code, body = http(url)
        data = json.loads(body)
        assert code == 200 and data["status"] == "success", (code, body)
        return data["data"]

    def query(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant query's result: each series' labels (without ``__name__``, ``job``,
        ``instance``) -> value."""
        out = {}
        for series in self.api("query", query=expr)["result"]:
            labels = tuple(sorted((k, v) for k, v in series["metric"].items()
                                  if k not in ("__name__", "job", "instance")))
            out[labels] = float(series["value"][1])
        return out

    def value(self, expr: str) -> float | None:
        """The single value of ``expr`` (None when it has no series)."""
        found = self.query(expr)
        assert len(found) <= 1, found
        return next(iter(found.values()), None)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
