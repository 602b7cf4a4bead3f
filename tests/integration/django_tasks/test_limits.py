"""djctl's limits on Django tasks: a unique key returns the queued task's result, a
concurrency key holds the second task of an account until the first is done."""

from __future__ import annotations

import pytest

pytest.importorskip("django")

from tests.integration.djproject.harness import DjangoDB
from tests.support.waiting import wait_for

WAIT = 90


def _gates(alias: str) -> list[tuple]:
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT gate, unique_key FROM delayed_jobs ORDER BY id")
        return [tuple(r) for r in cursor.fetchall()]


def test_a_unique_task_enqueued_twice_is_one_task(django_db: DjangoDB) -> None:
    from tests.integration.djproject.shop import tasks

    first = tasks.welcome.using(backend=django_db.alias).enqueue(7)
    again = tasks.welcome.using(backend=django_db.alias).enqueue(7)
    other = tasks.welcome.using(backend=django_db.alias).enqueue(8)
    assert again.id == first.id and other.id != first.id
    assert _gates(django_db.alias) == [(None, "welcome:7"), (None, "welcome:8")]


def test_a_concurrency_key_from_the_arguments(django_db: DjangoDB, worker_factory) -> None:
    from tests.integration.djproject.shop import tasks

    results = [tasks.sync.using(backend=django_db.alias).enqueue(a) for a in (1, 1, 2)]
    assert [g for g, _ in _gates(django_db.alias)] == ["concurrency:account:1"] * 2 + ["concurrency:account:2"]
    worker_factory()

    def finished() -> bool:
        for r in results:
            r.refresh()
        return all(r.is_finished for r in results)

    wait_for(finished, timeout=WAIT, message="the tasks to finish")
    assert [r.return_value for r in results] == [1, 1, 2]


def test_a_bad_limit_is_refused_before_anything_is_written(django_db: DjangoDB) -> None:
    from tests.integration.djproject.shop import tasks

    with pytest.raises(TypeError, match="unique_key"):
        tasks.welcome.using(backend=django_db.alias).enqueue("x" * 300)  # a key over 200 characters
    assert _gates(django_db.alias) == []
