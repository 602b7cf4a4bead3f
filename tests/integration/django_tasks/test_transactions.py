"""Django tasks are transactional: enqueued inside ``transaction.atomic()`` they commit or roll back with it."""

from __future__ import annotations

import pytest

pytest.importorskip("django")

from tests.integration.djproject.harness import DjangoDB
from tests.support.waiting import wait_for

# A worker starts Django before its first job; on a loaded machine that takes a while.
WAIT = 90


class Rollback(Exception):
    pass


def _jobs(alias: str) -> int:
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM delayed_jobs")
        return cursor.fetchone()[0]


def test_a_rolled_back_transaction_leaves_no_job(django_db: DjangoDB) -> None:
    from django.db import transaction

    from djctl.contrib.django import compat
    from tests.integration.djproject.shop import tasks
    from tests.integration.djproject.shop.models import Order

    with pytest.raises(Rollback), transaction.atomic(using=django_db.alias):
        order = Order.objects.using(django_db.alias).create(name="lost")
        result = tasks.note.using(backend=django_db.alias).enqueue(f"order {order.id}")
        raise Rollback
    assert Order.objects.using(django_db.alias).count() == 0
    assert _jobs(django_db.alias) == 0
    with pytest.raises(compat.TaskResultDoesNotExist):
        result.refresh()


def test_a_committed_transaction_runs_its_task(django_db: DjangoDB, worker_factory) -> None:
    from django.db import transaction

    from tests.integration.djproject.shop import tasks
    from tests.integration.djproject.shop.models import Order

    worker_factory()
    with transaction.atomic(using=django_db.alias):
        order = Order.objects.using(django_db.alias).create(name="kept")
        result = tasks.note.using(backend=django_db.alias).enqueue(f"order {order.id}")
        assert result.status == "READY"
    wait_for(lambda: (result.refresh(), result.is_finished)[1], timeout=WAIT, message="the committed task to run")
    assert result.status == "SUCCESSFUL"
    assert django_db.notes() == [f"order {order.id}"]
