"""Putting work on the queue (SPEC §2): enqueue, enqueue_many, delay, handle_asynchronously,
session=, database objects stored by primary key — checked in the table and by running the jobs."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import String, event, select, text
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    object_session,
)

import djctl
from djctl.queue.schema import delayed_jobs
from tests import jobs
from tests.jobs import Color, Level, Point, add_line
from tests.support.rows import count, utcnow


class Base(DeclarativeBase):
    pass


@djctl.job
class Cat(Base):
    """A database object whose methods jobs call (delayed_job's ActiveRecord case)."""

    __tablename__ = "djctl_test_cats"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))

    def note_name(self, path: str) -> None:
        add_line(path, self.name)

    def rename(self, name: str) -> None:
        self.name = name
        object_session(self).commit()

    @djctl.handle_asynchronously(priority=10, run_at=lambda: djctl.now() + dt.timedelta(days=1))
    def flip_hats(self, path: str) -> None:
        add_line(path, f"{self.name} flips hats")


@pytest.fixture
def cats(engine):
    Base.metadata.create_all(engine)
    yield
    Base.metadata.drop_all(engine)


def rows(engine) -> list[dict]:
    with engine.connect().execution_options(sqlite_read=True) as conn:
        return [dict(r._mapping) for r in conn.execute(select(delayed_jobs).order_by(delayed_jobs.c.id))]


def work_off(num: int = 100) -> tuple[int, int]:
    return djctl.Worker(sleep_delay=0.2).work_off(num)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# -- enqueue -------------------------------------------------------------------------------

def test_enqueue_writes_one_row_with_its_options(engine, tmp_path):
    before = utcnow()
    when = dt.datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    job_id = djctl.enqueue(jobs.Touch(str(tmp_path / "out"), "a"), priority=-3, run_at=when, queue="mail")
    second = djctl.enqueue(jobs.Touch(str(tmp_path / "out"), "b"))
    [row, row2] = rows(engine)
    assert row["id"] == job_id and row2["id"] == second
    assert json.loads(row["handler"]) == {"job": "tests.jobs:Touch",
                                          "state": {"path": str(tmp_path / "out"), "key": "a", "seconds": 0.0}}
    assert (row["priority"], row["queue"], row["attempts"]) == (-3, "mail", 0)
    assert row["run_at"] == dt.datetime(2031, 5, 6, 5, 8, 9, 123456)  # stored as naive UTC, microseconds kept
    assert row["locked_at"] is None and row["locked_by"] is None and row["failed_at"] is None
    assert row["last_error"] is None
    assert (row2["priority"], row2["queue"]) == (0, "default")
    assert before - dt.timedelta(seconds=1) <= row2["run_at"] <= utcnow() + dt.timedelta(seconds=1)
    assert before - dt.timedelta(seconds=1) <= row2["created_at"] <= utcnow() + dt.timedelta(seconds=1)


def test_a_job_class_names_its_queue(engine):
    djctl.enqueue(jobs.Overridden())
    djctl.enqueue(jobs.Overridden(), queue="other")
    assert [r["queue"] for r in rows(engine)] == ["special", "other"]


@pytest.mark.parametrize(
    "bad",
    [
        dict(priority="high"),
        dict(priority=True),
        dict(run_at="tomorrow"),
        dict(queue=""),
        dict(queue=7),
        dict(queue="q" * 256),
    ],
)
def test_bad_options_are_refused_and_nothing_is_queued(db_url, bad):
    with pytest.raises(TypeError):
        djctl.enqueue(jobs.Touch("/tmp/x", "k"), **bad)
    with pytest.raises(TypeError):
        djctl.enqueue_many([jobs.Touch("/tmp/x", "k")], **bad)
    with pytest.raises(TypeError):
        djctl.delay(jobs.record, **bad)("/tmp/x")
    assert count(db_url) == 0


def test_unstorable_arguments_are_refused_at_enqueue(db_url, tmp_path):
    with pytest.raises(TypeError, match="not a finite number"):
        djctl.delay(jobs.record)(str(tmp_path), float("nan"))
    with pytest.raises(TypeError, match="cannot be stored"):
        djctl.delay(jobs.record)(str(tmp_path), callback=lambda: None)
    with pytest.raises(TypeError, match="not a string"):
        djctl.enqueue(jobs.Touch(str(tmp_path), {1: 2}))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no perform"):
        djctl.enqueue(Point(1, 2))
    with pytest.raises(TypeError):
        djctl.delay(lambda: None)()
    assert count(db_url) == 0


# -- enqueue_many --------------------------------------------------------------------------

def test_enqueue_many_inserts_every_job_in_one_round_trip(engine, tmp_path):
    inserts = []

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT"):
            inserts.append(statement)

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        ids = djctl.enqueue_many([jobs.Touch(str(tmp_path / "out"), f"k{i}") for i in range(500)],
                                 priority=4, queue="bulk")
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    assert len(inserts) == 1
    assert len(ids) == 500 == len(set(ids))
    by_id = {r["id"]: r for r in rows(engine)}
    # The ids come back in the order the jobs were given.
    assert [json.loads(by_id[i]["handler"])["state"]["key"] for i in ids] == [f"k{i}" for i in range(500)]
    assert {(r["priority"], r["queue"]) for r in by_id.values()} == {(4, "bulk")}
    assert djctl.enqueue_many([]) == []


def test_a_job_id_is_never_given_to_another_job(engine, tmp_path):
    """Ids outlive their rows: the log, a worker's journal and `djctl retry ID` must never
    name a later job with an earlier one's id, even once the newest job is gone."""
    first = djctl.enqueue(jobs.Touch(str(tmp_path / "out"), "first"))
    assert djctl.Worker(log=lambda line: None).work_off()[0] == 1
    assert count(engine.url.render_as_string(hide_password=False)) == 0
    second = djctl.enqueue(jobs.Touch(str(tmp_path / "out"), "second"))
    assert second > first
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM delayed_jobs"))
    assert djctl.enqueue_many([jobs.Touch(str(tmp_path / "out"), "third")])[0] > second


def test_enqueue_many_with_one_bad_job_enqueues_none(db_url, tmp_path):
    good = [jobs.Touch(str(tmp_path), f"k{i}") for i in range(5)]
    with pytest.raises(TypeError):
        djctl.enqueue_many([*good, jobs.Touch(str(tmp_path), float("nan")), *good])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        djctl.enqueue_many([*good, object()])
    assert count(db_url) == 0


# -- delay, handle_asynchronously ----------------------------------------------------------

def test_delay_functions_methods_classmethods_and_staticmethods(engine, tmp_path):
    out = tmp_path / "out"
    mailer = jobs.Mailer(str(out), "ann")
    djctl.delay(jobs.add_line, priority=1)(str(out), "function")
    djctl.delay(mailer, priority=2).send("bob", when=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    djctl.delay(jobs.Mailer, priority=3).broadcast(str(out), "all")
    djctl.delay(jobs.Mailer, priority=4).ping(str(out))
    handlers = [json.loads(r["handler"]) for r in rows(engine)]
    assert [h["call"] for h in handlers] == ["tests.jobs:add_line", "tests.jobs:Mailer.send",
                                             "tests.jobs:Mailer.broadcast", "tests.jobs:Mailer.ping"]
    assert "self" in handlers[1] and "self" not in handlers[2]
    with pytest.raises(AttributeError, match="no method"):
        djctl.delay(mailer).nosuch()
    with pytest.raises(TypeError, match="not a function"):
        djctl.delay(mailer)()

    assert work_off() == (4, 0)
    assert lines(out) == ["function", "ann->bob@2030-01-01T00:00:00+00:00", "broadcast all", "ping"]
    assert rows(engine) == []


def test_handle_asynchronously_enqueues_and_now_runs_here(engine, tmp_path):
    out = tmp_path / "out"
    mailer = jobs.Mailer(str(out), "ann")
    job_id = mailer.later("bob")
    tomorrow_id = jobs.tomorrow(str(out), "x")
    soon_id = jobs.soon(str(out), "y")
    assert not out.exists()  # nothing ran yet

    mailer.later.now("carl")
    jobs.soon.now(str(out), "here")
    jobs.tomorrow.now(str(out), "here")
    assert lines(out) == ["later ann->carl", "soon here", "tomorrow here"]

    by_id = {r["id"]: r for r in rows(engine)}
    assert (by_id[job_id]["priority"], by_id[job_id]["queue"]) == (7, "mail")
    assert json.loads(by_id[job_id]["handler"])["call"] == "tests.jobs:Mailer.later"
    in_a_day = utcnow() + dt.timedelta(days=1)
    assert abs(by_id[tomorrow_id]["run_at"] - in_a_day) < dt.timedelta(minutes=1)
    assert by_id[soon_id]["run_at"] <= utcnow()

    assert work_off() == (2, 0)  # tomorrow's job is not due; priority 0 runs before 7
    assert lines(out)[3:] == ["soon y", "later ann->bob"]
    assert [r["id"] for r in rows(engine)] == [tomorrow_id]


def test_arguments_reach_the_job_losslessly(engine, tmp_path):
    out = tmp_path / "out"
    args = (
        dt.datetime(2026, 11, 22, 10, 4, 5, 123456, tzinfo=dt.timezone.utc),
        dt.datetime(2026, 11, 22, 10, 4, 5, 7),
        dt.date(2026, 2, 28),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        Decimal("0.10000000000000000000001"),
        Color.RED,
        Level.LOW,
        (1, (2, "3")),
        b"\x00\x01\xfe",
        Point(3, 4),
        {"nested": [None, True, 1.25, "ünïcode ✓"]},
    )
    djctl.delay(jobs.record)(str(out), *args, key=frozenset({1}))
    assert work_off() == (1, 0)
    assert lines(out) == [repr((args, {"key": frozenset({1})}))]


# -- the caller's transaction --------------------------------------------------------------

def test_enqueue_in_a_session_commits_and_rolls_back_with_it(engine, cats, tmp_path):
    with Session(engine) as session:
        session.add(Cat(id=1, name="Tom"))
        session.flush()
        djctl.enqueue(jobs.Touch(str(tmp_path / "out"), "rolled back"), session=session)
        djctl.enqueue_many([jobs.Touch(str(tmp_path / "out"), "also")] * 2, session=session)
        djctl.delay(jobs.add_line, session=session)(str(tmp_path / "out"), "and this")
        session.rollback()
    assert rows(engine) == []

    with Session(engine) as session:
        session.add(Cat(id=2, name="Kit"))
        job_id = djctl.enqueue(jobs.Touch(str(tmp_path / "out"), "committed"), session=session)
        ids = djctl.enqueue_many([jobs.Touch(str(tmp_path / "out"), f"m{i}") for i in range(3)], session=session)
        session.commit()
    assert [r["id"] for r in rows(engine)] == [job_id, *ids]
    with engine.connect().execution_options(sqlite_read=True) as conn:
        assert conn.execute(text("SELECT name FROM djctl_test_cats")).scalars().all() == ["Kit"]


# -- database objects ----------------------------------------------------------------------

def test_database_objects_are_stored_by_primary_key_and_loaded_fresh(engine, cats, tmp_path):
    out = tmp_path / "out"
    with Session(engine) as session:
        cat = Cat(id=7, name="Tom")
        session.add(cat)
        session.commit()
        djctl.delay(jobs.record)(str(out), cat)  # as an argument
        djctl.delay(cat).note_name(str(out))  # as self
        hats = cat.flip_hats(str(out))  # a handle_asynchronously method
    handlers = [json.loads(r["handler"]) for r in rows(engine)]
    assert handlers[0]["args"][1] == {"__djctl__": "orm", "cls": "tests.integration.test_enqueue:Cat", "pk": [7]}
    assert handlers[1]["self"] == {"__djctl__": "orm", "cls": "tests.integration.test_enqueue:Cat", "pk": [7]}
    by_id = {r["id"]: r for r in rows(engine)}
    assert by_id[hats]["priority"] == 10
    assert by_id[hats]["run_at"] > utcnow() + dt.timedelta(hours=23)

    with engine.begin() as conn:
        conn.execute(text("UPDATE djctl_test_cats SET name = 'Thomas' WHERE id = 7"))
        conn.execute(text("UPDATE delayed_jobs SET run_at = :t"), {"t": utcnow() - dt.timedelta(seconds=1)})
    assert work_off() == (3, 0)
    first, second, third = lines(out)
    assert "Cat object" in first  # the job got a Cat
    assert second == "Thomas"  # read from the database when the job ran, not when it was enqueued
    assert third == "Thomas flips hats"


def test_a_job_may_change_and_commit_its_object(engine, cats):
    with Session(engine) as session:
        cat = Cat(id=3, name="Tom")
        session.add(cat)
        session.commit()
        djctl.delay(cat).rename("Felix")
        djctl.delay(cat).rename("Garfield")
    assert work_off() == (2, 0)
    with engine.connect().execution_options(sqlite_read=True) as conn:
        assert conn.execute(text("SELECT name FROM djctl_test_cats WHERE id = 3")).scalar_one() == "Garfield"


def test_an_unsaved_object_is_refused(engine, cats):
    with pytest.raises(TypeError, match="no primary key"):
        djctl.delay(Cat(name="Nobody")).note_name("/tmp/x")
    assert rows(engine) == []


def test_a_deleted_object_fails_the_job_once_and_for_all(engine, cats, tmp_path):
    out = tmp_path / "out"
    with Session(engine, expire_on_commit=False) as session:
        first, second = Cat(id=1, name="Gone"), Cat(id=2, name="Here")
        session.add_all([first, second])
        session.commit()
    gone = djctl.delay(first).note_name(str(out))
    as_arg = djctl.delay(jobs.record)(str(out), first)
    djctl.delay(second).note_name(str(out))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM djctl_test_cats WHERE id = 1"))
    assert work_off() == (1, 2)
    assert lines(out) == ["Here"]
    failed = {r["id"]: r for r in rows(engine)}
    assert set(failed) == {gone, as_arg}
    for row in failed.values():
        assert row["failed_at"] is not None, "not retried"
        assert row["attempts"] == 1
        assert row["locked_by"] is None
        assert row["last_error"].startswith("RecordNotFound: Cat with primary key 1 no longer exists")
