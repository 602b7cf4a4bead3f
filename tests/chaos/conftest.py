"""What the chaos tests share: an application under ``djctl up`` that runs the chaos jobs,
a way to pick databases, the SIGKILL storm, reading the runs file, and a TCP proxy that
can cut the database off."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy.engine import make_url

from tests.support.app import App, running_app
from tests.support.databases import KINDS
from tests.support.waiting import wait_for

CHAOS_APP = "tests.jobs,tests.chaos"


def kinds(*wanted: str) -> list[str]:
    """The databases a test runs on: those it names, among those configured for this run
    (an empty list: pytest skips the test)."""
    return [k for k in wanted if k in KINDS]


CHAOS_SETTINGS = {"DJ_APP": CHAOS_APP, "DJ_RESTART_STABLE_AFTER": "0.3", "DJ_RESTART_BACKOFF": "0.05",
                  "DJ_RESTART_BACKOFF_MAX": "0.4"}


def make_app(request, tmp_path: Path, name: str = "app", **extra: str) -> App:
    """An application directory whose workers may run the chaos jobs; quick restarts."""
    return App(tmp_path / name, request.getfixturevalue("djctl_env"), request.getfixturevalue("db_url"),
               **{**CHAOS_SETTINGS, **extra})


@pytest.fixture
def app(request, tmp_path):
    yield from running_app(request, tmp_path, **CHAOS_SETTINGS)


def runs(path: Path) -> Counter:
    """How many times each key was recorded in ``path`` (by tests.chaos.Record or tests.jobs.Touch)."""
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(line.split()[0] for line in lines if line)


def runners(path: Path) -> dict[str, list[int]]:
    """The worker pids that ran each key (tests.chaos.Record), in order."""
    out: dict[str, list[int]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        key, pid = line.split()
        out.setdefault(key, []).append(int(pid))
    return out


def storm(app: App, period: float, duration: float, seed: int = 8, at_least: int = 0,
          within: float | None = None) -> list[int]:
    """SIGKILL a random worker that is up every ``period`` seconds for ``duration``
    seconds — and on past it, until ``at_least`` were killed or ``within`` seconds have
    gone — (a tick that finds no worker up kills nothing); returns the pids killed. The
    pacing is the chaos itself: nothing here waits for a result.

    A killed worker is back only once a new interpreter has started (0.5 s on an idle
    machine, 3 to 5 s on a loaded one), so how many ticks find one up depends on the
    machine: ``at_least`` makes the storm as big as the test needs, however slow that is."""
    rng = random.Random(seed)
    killed: list[int] = []
    start = time.monotonic()
    end = start + max(duration, within or 0.0)
    tick = 0
    while True:
        tick += 1
        at = start + tick * period
        if at > end or (at > start + duration and len(killed) >= at_least):
            return killed
        # On a fixed schedule, so that slow answers from the supervisor do not stretch it.
        time.sleep(max(0.0, at - time.monotonic()))
        pids = [p["pid"] for p in app.ps() if p["type"] == "worker" and p["pid"] and p["state"] == "up"]
        if pids:
            pid = rng.choice(pids)
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass


def offspring(path: Path) -> list[int]:
    """The three pids a tests.chaos.harden_jobs.Offspring job wrote, once it has written them."""
    pids = [int(x) for x in path.read_text().split()] if path.exists() else []
    return pids if len(pids) == 3 else []


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def started(path: Path) -> list[int]:
    """The pids of an Offspring job's three children, once they run in three sessions."""
    pids = wait_for(lambda: offspring(path), 30, message="the job's children started")
    assert all(alive(p) for p in pids)
    # The escape really happened: two of them are in sessions of their own.
    assert len({os.getsid(p) for p in pids}) == 3
    return pids


def gone(pids: list[int], timeout: float, when: str) -> None:
    """Wait until none of ``pids`` runs."""
    wait_for(lambda: not any(alive(p) for p in pids), timeout,
             message=f"the job's children gone {when}: {[p for p in pids if alive(p)]} alive")


def completed_ids(app: App) -> Counter:
    """How many times the workers logged each job id as COMPLETED."""
    found = Counter()
    for line in app.log():
        m = re.search(r"\(id=(\d+)\) COMPLETED( after [0-9.]+)?$", line)
        if m:
            found[int(m[1])] += 1
    return found


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of ``target``, on a thread per direction.

    :meth:`cut` closes every connection (both ends, with a reset) and, until
    :meth:`restore`, resets every new one as soon as it is accepted: to a client the
    database is gone, as in a crash or a network cut.

    :meth:`freeze` holds every byte instead, both ways, on open connections and new ones
    alike, until :meth:`thaw`: a silent partition, where nothing fails, everything waits.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._flowing = threading.Event()
        self._flowing.set()
        self.cut_at = 0.0
        self._closed = False
        self.accepted = 0
        self.refused = 0
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def url(self, url: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def cut(self) -> None:
        self.cut_at = time.monotonic()
        with self._lock:
            self._cut = True
            doomed = list(self._open)
            self._open.clear()
        for s in doomed:
            _reset(s)

    def hold(self, seconds: float) -> None:
        """Keep the cut until ``seconds`` after it began: the outage's length is the
        test's input, so this one sleeps."""
        time.sleep(max(0.0, self.cut_at + seconds - time.monotonic()))

    def freeze(self) -> None:
        self.cut_at = time.monotonic()
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.thaw()
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._flowing.wait()  # a frozen proxy accepts, then holds the connection
            with self._lock:
                cut = self._cut
            if cut:
                self.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if self._cut:
                    _reset(client)
                    _reset(server)
                    continue
                self._open.update((client, server))
                self.accepted += 1
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), name="proxy-pipe", daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._open.discard(src)
            self._open.discard(dst)
        for s in (src, dst):
            _reset(s)


def _reset(s: socket.socket) -> None:
    """Close ``s`` with a RST rather than a FIN, as a dead peer or a cut cable looks."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    try:
        s.shutdown(socket.SHUT_RD)  # wakes the thread reading it, and sends nothing
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


@pytest.fixture
def proxy(db_url: str) -> Iterator[Proxy]:
    """A TCP proxy to the test's database server, to cut or freeze the way to it."""
    server = make_url(db_url)
    p = Proxy((server.host or "127.0.0.1", server.port or 5432))
    yield p
    p.close()
