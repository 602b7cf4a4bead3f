"""The supervisor's HTTP endpoint (``djctl up --metrics 127.0.0.1:9187``): ``/metrics`` in
Prometheus' text format, ``/healthz``, ``/readyz`` and ``/healthz/<process or type>``.

GET only (anything else is 405), loopback only unless ``metrics_remote`` is set. Each
request is served on a thread of its own from state kept beforehand (see
:mod:`djctl.daemon.health`); only ``/metrics`` reads the database, and waits for it at
most ``QueueCollector.timeout``.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from djctl.daemon import health
from djctl.daemon.health import Answer, DatabaseProbe, LoopState
from djctl.daemon.metrics import Metrics

DEFAULT_PORT = 9187


class AddressError(ValueError):
    """A metrics address that cannot be used; the message is one line saying what to do."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str, remote: bool = False) -> Address:
    """``HOST:PORT`` (``127.0.0.1:9187``, ``[::1]:9187``, ``localhost:9187``; ``:9187``
    is loopback). Refuses, with AddressError, anything else, and — unless ``remote`` —
    a host that is not a loopback address."""
    value = text.strip()
    hint = f"bad metrics address {text!r}; use HOST:PORT, e.g. 127.0.0.1:{DEFAULT_PORT}"
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
    else:
        host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise AddressError(hint)
    host = host or "127.0.0.1"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_NUMERICSERV)
    except (socket.gaierror, UnicodeError):
        raise AddressError(f"{hint} ({host!r} is no address of this host)") from None
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    if not remote and not all(a.is_loopback for a in addresses):
        raise AddressError(f"metrics address {text!r} is not a loopback address; serving metrics beyond this "
                           "host needs metrics_remote = true (DJ_METRICS_REMOTE=1)")
    return Address(host, int(port))


class Exporter:
    """Serves the routes on ``address`` from a thread of its own until :meth:`close`."""

    def __init__(self, address: Address, metrics: Metrics, state: Callable[[], LoopState | None],
                 probe: DatabaseProbe | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.state = state
        self.probe = probe
        self.clock = clock
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        try:
            self.server = Server((address.host, address.port), _handler(self))
        except OSError as e:
            raise AddressError(f"cannot serve metrics on {address}: {e.strerror}") from None
        self.address = Address(address.host, self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="djctl-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def answer(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of ``path``."""
        route = path.split("?", 1)[0].rstrip("/") or "/"
        if route == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)
        now = self.clock()
        state = self.state()
        if route == "/healthz":
            return _plain(health.healthz(state, now))
        if route == "/readyz":
            database = self.probe.answering() if self.probe is not None else Answer(200, "")
            return _plain(health.readyz(state, now, database))
        if route.startswith("/healthz/"):
            return _plain(health.liveness(state, now, route.removeprefix("/healthz/")))
        return 404, "text/plain; charset=utf-8", b"not found; try /metrics, /healthz, /readyz or /healthz/worker.1\n"


def _plain(answer: Answer) -> tuple[int, str, bytes]:
    return answer.status, "text/plain; charset=utf-8", (answer.reason + "\n").encode()


def _handler(exporter: Exporter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "djctl"
        sys_version = ""
        timeout = 10  # a client that sends nothing does not hold a thread for long

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            try:
                status, kind, body = exporter.answer(self.path)
            except Exception as e:  # noqa: BLE001 - one request failed; the server goes on
                status, kind, body = 500, "text/plain; charset=utf-8", f"{type(e).__name__}: {e}\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def refuse(self) -> None:
            body = b"only GET is answered here\n"
            self.send_response(405)
            self.send_header("Allow", "GET")
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def __getattr__(self, name: str) -> Any:
            if name.startswith("do_"):
                return self.refuse
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            pass  # scrapes every few seconds would drown the log

    return Handler
