"""Fixtures every tier may use: a fresh database of each kind, djctl configured on it,
and the environment for djctl subprocesses. The helpers live in :mod:`tests.support`;
the names below stay importable from here for tests written before it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from djctl import api, config
from djctl.queue import migrations
from tests.support.commands import ROOT, djctl_cmd
from tests.support.databases import IN_CI, KINDS, URLS, database_url, drop_databases
from tests.support.rows import count
from tests.support.waiting import wait_for

# Fixtures shared by more than one tier (systemd's notify socket).
pytest_plugins = ["tests.support.notify", "tests.support.logs"]


def pytest_sessionfinish(session, exitstatus) -> None:
    drop_databases()


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


__all__ = ["IN_CI", "KINDS", "ROOT", "URLS", "count", "database_url", "djctl_cmd", "migrations", "wait_for"]
