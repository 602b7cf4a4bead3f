"""The databases a test run uses.

Kinds come from DJCTL_TEST_DATABASES (default: sqlite,postgresql,mysql), servers from
DJCTL_TEST_POSTGRESQL_URL / DJCTL_TEST_MYSQL_URL (default: the loopback servers). Each
pytest process makes databases of its own, so parallel runs never collide. A server that
does not answer skips its tests locally, and fails them in CI (CI=true).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from djctl import api
from djctl.queue import engines as store
from djctl.queue import schema

URLS = {
    "postgresql": os.environ.get("DJCTL_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("DJCTL_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}
KINDS = [k.strip() for k in os.environ.get("DJCTL_TEST_DATABASES", "sqlite,postgresql,mysql").split(",") if k.strip()]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_created: dict[str, str | None] = {}
_errors: dict[str, str] = {}


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


def drop_databases() -> None:
    """Drop the databases this process created (at the end of the session)."""
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


def fresh_database(kind: str, tmp_path: Path, label: str = "fresh") -> Iterator[str]:
    """A database of ``kind`` with no table at all, dropped afterwards (skips when its server is away)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'{label}.sqlite3'}"
        return
    database_url(kind, tmp_path)  # skips (or fails in CI) when the server is not there
    base = store.normalize_url(URLS[kind])
    name = f"djctl_{label}{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if kind == "postgresql" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
        admin.dispose()
