"""Test fixtures: a fresh database of each kind, djctl configured on it, and waiting with deadlines.

Databases come from DJCTL_TEST_DATABASES (default: sqlite,postgresql,mysql) at
DJCTL_TEST_POSTGRESQL_URL / DJCTL_TEST_MYSQL_URL (default: the loopback servers).
Each pytest process makes databases of its own, so parallel runs never collide. A
server that does not answer skips its tests locally, and fails them in CI (CI=true).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from djctl import api, config
from djctl.queue import migrations
from djctl.queue import schema
from djctl.queue import engines as store

ROOT = Path(__file__).resolve().parent.parent
URLS = {
    "postgresql": os.environ.get("DJCTL_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("DJCTL_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}
KINDS = [k.strip() for k in os.environ.get("DJCTL_TEST_DATABASES", "sqlite,postgresql,mysql").split(",") if k.strip()]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_created: dict[str, str | None] = {}


def _server_database(kind: str) -> str | None:
    """A database of our own on the ``kind`` server (created once per pytest process), or None."""
    if kind in _created:
        return _created[kind]
    base = store.normalize_url(URLS[kind])
    name = f"djctl_t{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
    except Exception as e:  # noqa: BLE001 - reported as a skip or, in CI, a failure
        _created[kind] = None
        _errors[kind] = str(e).splitlines()[0]
        return None
    _created[kind] = base.set(database=name).render_as_string(hide_password=False)
    return _created[kind]


_errors: dict[str, str] = {}


def pytest_sessionfinish(session, exitstatus) -> None:
    for kind, url in _created.items():
        if url is None:
            continue
        parsed = make_url(url)
        api_engine = store._engines
        for key in list(api_engine):
            api_engine.pop(key).dispose()
        admin = create_engine(store.normalize_url(URLS[kind]), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                force = " WITH (FORCE)" if kind == "postgresql" else ""
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {parsed.database}{force}")
        except Exception:  # noqa: BLE001 - leftover test databases are harmless
            pass
        admin.dispose()


def _truncate(url: str) -> None:
    eng = api.engine(url)
    with eng.begin() as conn:
        for table in reversed(schema.metadata.sorted_tables):
            conn.execute(table.delete())


def database_url(kind: str, tmp_path: Path) -> str:
    """A clean, migrated database of ``kind`` for one test."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    url = _server_database(kind)
    if url is None:
        message = f"{kind} is not reachable at {URLS[kind]}: {_errors.get(kind)}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    _truncate(url)
    return url


@pytest.fixture(params=KINDS)
def db_kind(request) -> str:
    return request.param


@pytest.fixture
def db_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    """A clean database of each configured kind, with djctl configured on it (app: tests.jobs)."""
    url = database_url(db_kind, tmp_path)
    previous = config._current
    config.set_current(config.Settings(database_url=url, app=("tests.jobs",), sleep_delay=0.2,
                                       state_dir=tmp_path / ".djctl"))
    api.engine(url)
    yield url
    config._current = previous


@pytest.fixture
def engine(db_url):
    return api.engine(db_url)


@pytest.fixture
def djctl_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for djctl subprocesses working on ``db_url``."""
    env = dict(os.environ)
    env.update(
        DJ_DATABASE_URL=db_url,
        DJ_APP="tests.jobs",
        DJ_STATE_DIR=str(tmp_path / ".djctl"),
        DJ_SLEEP_DELAY="0.2",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
    )
    return env


def djctl_cmd(*args: str) -> list[str]:
    """The command line running the installed djctl with these arguments."""
    return [sys.executable, "-m", "djctl", *args]


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, interval: float = 0.02,
             message: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def count(url: str, where: str = "1=1", **params) -> int:
    with api.engine(url).connect().execution_options(sqlite_read=True) as conn:
        return conn.execute(text(f"SELECT COUNT(*) FROM delayed_jobs WHERE {where}"), params).scalar_one()


__all__ = ["ROOT", "count", "djctl_cmd", "wait_for", "migrations"]
