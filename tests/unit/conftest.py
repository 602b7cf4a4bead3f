"""The unit tier: no database server, no child process -- seconds, on any machine.

Every unit test runs with process creation (``subprocess``, ``os.fork``, ``os.posix_spawn``)
and connections to servers (TCP sockets, PostgreSQL's libpq) refused: a test that needs
one belongs in tests/integration or tests/acceptance. The refusal raises, and is also
recorded, so that code which swallows the error still fails the test at teardown.
Unix sockets stay open: the control socket and sd_notify are tested here, in one process.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

DATABASE_FIXTURES = {"db_kind", "db_url", "engine", "djctl_env"}


class UnitTierViolation(AssertionError):
    """A unit test tried to start a process or reach a server."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if not str(item.path).startswith(here + os.sep):
            continue
        wanted = DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if wanted:
            raise pytest.UsageError(f"{item.nodeid} uses {', '.join(sorted(wanted))}: a test on a database "
                                    "belongs in tests/integration, not tests/unit")


@pytest.fixture(autouse=True)
def unit_tier_violations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """What the test tried that the unit tier forbids (empty, or the test fails at teardown)."""
    seen: list[str] = []

    def refuse(what: str):
        def refused(*args, **kwargs):
            seen.append(what)
            raise UnitTierViolation(f"a unit test may not {what}: move it to tests/integration or "
                                    "tests/acceptance")
        return refused

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse("start a child process (subprocess)"))
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse(f"start a child process (os.{name})"))
    monkeypatch.setattr(psycopg.Connection, "connect", refuse("connect to PostgreSQL"))
    monkeypatch.setattr(psycopg, "connect", refuse("connect to PostgreSQL"))

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(real):
        def connect(self, address, *args):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                return refuse(f"connect to a server ({address!r})")()
            return real(self, address, *args)
        return connect

    monkeypatch.setattr(socket.socket, "connect", guarded(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(real_connect_ex))
    yield seen
    if seen:
        pytest.fail(f"a unit test may not {seen[0]}: move it to tests/integration or tests/acceptance",
                    pytrace=False)
