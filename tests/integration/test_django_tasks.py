"""Django's tasks framework on djctl, through a real worker: a conformance suite after Django's backend tests."""

from __future__ import annotations

from datetime import timedelta

import pytest

pytest.importorskip("django")

from tests.conftest import wait_for  # noqa: E402
from tests.integration.djproject.harness import DjangoDB, django_db, worker_factory  # noqa: E402,F401


def _tasks():
    from tests.integration.djproject.shop import tasks

    return tasks


def _finished(result) -> bool:
    result.refresh()
    return result.is_finished


def test_sync_task_returns_its_value(django_db: DjangoDB, worker_factory) -> None:
    tasks = _tasks()
    result = tasks.add.using(backend=django_db.alias).enqueue(2, 3)
    assert result.status == "READY" and result.args == [2, 3]
    worker_factory()
    wait_for(lambda: _finished(result), message="the task to finish")
    assert result.status == "SUCCESSFUL"
    assert result.return_value == 5
    assert result.enqueued_at <= result.started_at <= result.last_attempted_at <= result.finished_at
    assert len(result.worker_ids) == 1 and result.worker_ids[0].startswith("host:")
    assert result.errors == []
