"""Issue 20: a single ``enqueue()`` runs a compiled INSERT on the driver's own connection
(PostgreSQL, SQLite). It must store exactly what the SQLAlchemy path stores, report a
refusal as SQLAlchemy's DBAPIError, and survive a connection the server closed."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy.exc
from sqlalchemy import select, text

import djctl
from djctl.queue import engines
from djctl.queue.schema import delayed_jobs
from tests import jobs
from tests.support.databases import KINDS
from tests.support.rows import count

NOOP = jobs.Touch("/nonexistent/never-run", "x")


def stored(engine, job_id: int) -> dict:
    """The row as the database holds it: each timestamp as the database's own text."""
    with engine.connect() as conn:
        values = conn.execute(select(delayed_jobs).where(delayed_jobs.c.id == job_id)).mappings().one()
        raw = conn.execute(text("SELECT CAST(run_at AS CHAR(40)), CAST(created_at AS CHAR(40)) "
                                "FROM delayed_jobs WHERE id = :id"), {"id": job_id}).one()
    return {**{k: v for k, v in values.items() if k != "id"}, "raw": tuple(raw)}


def test_one_enqueue_stores_what_enqueue_many_stores(engine):
    run_at = dt.datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    one = djctl.enqueue(NOOP, priority=-7, run_at=run_at, queue="same")
    (many,) = djctl.enqueue_many([NOOP], priority=-7, run_at=run_at, queue="same")
    a, b = stored(engine, one), stored(engine, many)
    assert a["run_at"] == b["run_at"] == dt.datetime(2031, 5, 6, 7, 8, 9, 123456)
    assert a["raw"][0] == b["raw"][0]
    assert {k: a[k] for k in ("priority", "queue", "attempts", "handler", "failed_at", "locked_at")} == \
           {k: b[k] for k in ("priority", "queue", "attempts", "handler", "failed_at", "locked_at")}
    assert many > one


def test_a_refused_insert_is_a_dbapi_error_and_nothing_is_stored(engine, db_kind):
    if db_kind == "mysql":
        pytest.skip("MySQL's single enqueue goes through SQLAlchemy")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE djctl_test_guard (id INTEGER)"))
    try:
        trigger = {
            "postgresql": ["CREATE FUNCTION djctl_test_refuse() RETURNS trigger AS $$ BEGIN "
                           "RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql",
                           "CREATE TRIGGER djctl_test_refuse BEFORE INSERT ON delayed_jobs "
                           "FOR EACH ROW EXECUTE FUNCTION djctl_test_refuse()"],
            "sqlite": ["CREATE TRIGGER djctl_test_refuse BEFORE INSERT ON delayed_jobs "
                       "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"],
        }[db_kind]
        with engine.begin() as conn:
            for sql in trigger:
                conn.execute(text(sql))
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="refused by the test"):
            djctl.enqueue(NOOP, queue="refused")
    finally:
        with engine.begin() as conn:
            on = " ON delayed_jobs" if db_kind == "postgresql" else ""
            conn.execute(text(f"DROP TRIGGER djctl_test_refuse{on}"))
            if db_kind == "postgresql":
                conn.execute(text("DROP FUNCTION djctl_test_refuse()"))
            conn.execute(text("DROP TABLE djctl_test_guard"))
    assert count(str(engine.url.render_as_string(hide_password=False)), "queue = 'refused'") == 0
    assert djctl.enqueue(NOOP, queue="after")


@pytest.mark.parametrize("db_kind", [k for k in KINDS if k == "postgresql"])
def test_a_connection_the_server_closed_is_replaced(engine, monkeypatch):
    """Idle past PING_IF_IDLE, a pooled connection is pinged and replaced; used a moment
    ago, it is trusted, and if it was dead the enqueue fails with a DBAPIError and the
    pool drops it, so the next enqueue works. Nothing is enqueued twice."""
    engine.dispose()  # one pooled connection from here on: the one each enqueue reuses
    try:
        djctl.enqueue(NOOP, queue="ping")
        for idle, failing in ((0.0, False), (3600.0, True)):
            monkeypatch.setattr(engines, "PING_IF_IDLE", idle)
            with engine.connect() as conn:
                pid = conn.connection.driver_connection.info.backend_pid
            with engines.make_engine(engine.url, pool_size=1).connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            if failing:
                with pytest.raises(sqlalchemy.exc.OperationalError):
                    djctl.enqueue(NOOP, queue="ping")
            djctl.enqueue(NOOP, queue="ping")
    finally:
        engine.dispose()  # no connection of this test's making is left for the next one
    url = engine.url.render_as_string(hide_password=False)
    assert count(url, "queue = 'ping'") == 3
