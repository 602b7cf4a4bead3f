"""Enqueueing from async code (issue 13): aenqueue / aenqueue_many from a running loop, and
in an AsyncSession whose transaction the jobs commit or roll back with (PostgreSQL, SQLite)."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

import djctl
from djctl import api
from djctl.queue import engines as store
from djctl.queue.schema import delayed_jobs
from tests import jobs
from tests.integration import async_jobs as aj
from tests.support.rows import count


def handlers(url: str) -> list[dict]:
    with api.engine(url).connect().execution_options(sqlite_read=True) as conn:
        rows = conn.execute(select(delayed_jobs.c.handler, delayed_jobs.c.priority, delayed_jobs.c.queue)
                            .order_by(delayed_jobs.c.id)).all()
    return [dict(json.loads(h)["state"], priority=p, queue=q) for h, p, q in rows]


def async_url(url: str) -> str:
    """The same database through an async driver: psycopg's async mode, or aiosqlite."""
    parsed = store.normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def test_aenqueue_and_aenqueue_many_from_a_running_loop(db_url, tmp_path):
    async def main() -> tuple[int, list[int]]:
        one = await djctl.aenqueue(jobs.Touch("p", "a"), priority=3, queue="mail")
        many = await djctl.aenqueue_many([jobs.Touch("p", "b"), jobs.Touch("p", "c")], priority=-1)
        return one, many

    one, many = asyncio.run(main())
    assert many == [one + 1, one + 2]
    assert [(h["key"], h["priority"], h["queue"]) for h in handlers(db_url)] == [
        ("a", 3, "mail"), ("b", -1, "default"), ("c", -1, "default")]
    assert asyncio.run(djctl.aenqueue_many([])) == []


def test_aenqueue_rejects_what_enqueue_rejects(db_url):
    with pytest.raises(TypeError, match="priority must be an integer"):
        asyncio.run(djctl.aenqueue(jobs.Touch("p", "a"), priority="high"))
    with pytest.raises(TypeError, match="no perform"):
        asyncio.run(djctl.aenqueue_many([jobs.Touch("p", "a"), object()]))
    assert count(db_url) == 0


def test_aenqueue_leaves_the_loop_free_while_the_database_makes_it_wait(db_kind, db_url):
    if db_kind != "sqlite":
        pytest.skip("SQLite's write lock is the wait this test can hold and release")
    # Another connection holds SQLite's write lock. A blocking enqueue would stall the
    # loop until busy_timeout and fail; aenqueue waits off the loop, so the coroutine
    # that releases the lock gets to run and the enqueue then goes through.
    holder = api.engine(db_url).connect()
    holder.begin()
    holder.execute(text("UPDATE delayed_jobs SET priority = 0 WHERE 1 = 0"))

    async def main() -> int:
        task = asyncio.create_task(djctl.aenqueue(jobs.Touch("p", "waited")))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()
        holder.commit()
        return await task

    try:
        assert asyncio.run(main()) > 0
    finally:
        holder.close()
    assert count(db_url) == 1


@pytest.fixture
def async_engine(db_kind, db_url):
    if db_kind == "mysql":
        pytest.skip("AsyncSession enqueues are tested on PostgreSQL and SQLite")
    from sqlalchemy.ext.asyncio import create_async_engine

    eng = create_async_engine(async_url(db_url))
    yield eng
    asyncio.run(eng.dispose())


def test_in_an_async_session_jobs_commit_with_the_callers_transaction(async_engine, db_url):
    from sqlalchemy.ext.asyncio import AsyncSession

    async def main() -> list[int]:
        async with AsyncSession(async_engine) as session:
            async with session.begin():
                ids = [await djctl.aenqueue(jobs.Touch("p", "one"), session=session)]
                ids += await djctl.aenqueue_many([jobs.Touch("p", "two")], session=session, queue="q")
                assert count(db_url) == 0, "visible before the caller committed"
        return ids

    ids = asyncio.run(main())
    assert len(ids) == 2 and count(db_url) == 2
    assert [h["key"] for h in handlers(db_url)] == ["one", "two"]


def test_in_an_async_session_jobs_roll_back_with_the_callers_transaction(async_engine, db_url):
    from sqlalchemy.ext.asyncio import AsyncSession

    async def main() -> None:
        async with AsyncSession(async_engine) as session:
            with pytest.raises(RuntimeError):
                async with session.begin():
                    await djctl.aenqueue(jobs.Touch("p", "one"), session=session)
                    await djctl.aenqueue_many([jobs.Touch("p", "two"), jobs.Touch("p", "3")], session=session)
                    raise RuntimeError("the request failed")

    asyncio.run(main())
    assert count(db_url) == 0


def test_a_job_enqueued_in_an_async_session_is_worked_off(async_engine, db_url, tmp_path):
    from sqlalchemy.ext.asyncio import AsyncSession

    out = tmp_path / "out"

    async def main() -> None:
        async with AsyncSession(async_engine) as session, session.begin():
            await djctl.aenqueue(aj.AsyncPerform(str(out), "from-session"), session=session)

    asyncio.run(main())
    assert djctl.Worker(log=lambda _l: None, sleep_delay=0.2).work_off() == (1, 0)
    assert out.read_text().split()[0] == "from-session"
    assert make_url(db_url)  # the sync URL stayed djctl's own
