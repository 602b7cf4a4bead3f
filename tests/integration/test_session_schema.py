"""Enqueueing in the caller's session on a database without djctl's tables: one line that says what to run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

import djctl
from djctl.queue import migrations
from djctl.queue.engines import normalize_url
from tests.jobs import Touch
from tests.support.databases import IN_CI, URLS


@contextmanager
def empty_database(kind: str, tmp_path) -> Iterator[Engine]:
    """A database of ``kind`` that djctl has never seen."""
    if kind == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'app.sqlite3'}")
        yield engine
        engine.dispose()
        return
    admin = create_engine(normalize_url(URLS[kind]), isolation_level="AUTOCOMMIT")
    name = f"djctl_app_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except Exception as e:  # noqa: BLE001
        if IN_CI:
            raise
        pytest.skip(f"{kind} unreachable: {e}")
    engine = create_engine(normalize_url(URLS[kind]).set(database=name))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name}")
        admin.dispose()


def test_a_session_on_a_database_without_the_schema_gets_one_clear_line(db_kind, tmp_path):
    with empty_database(db_kind, tmp_path) as engine:
        with engine.begin() as conn:  # the application's own table
            conn.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY)"))
        with Session(engine) as session:
            session.execute(text("INSERT INTO orders (id) VALUES (1)"))
            with pytest.raises(migrations.SchemaNotCurrent) as caught:
                djctl.enqueue(Touch("/dev/null", "x"), session=session)
            session.rollback()
        message = str(caught.value)
        assert "\n" not in message and "djctl db upgrade" in message
        with engine.connect() as conn:  # nothing was created behind the caller's back
            assert conn.execute(text("SELECT COUNT(*) FROM orders")).scalar_one() == 0
            assert not conn.dialect.has_table(conn, "delayed_jobs")
