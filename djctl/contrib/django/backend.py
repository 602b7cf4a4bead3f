"""``DjctlBackend``: Django's tasks framework on djctl's queue.

Each task call is one ``delayed_jobs`` row (a :class:`~djctl.contrib.django.job.TaskJob`)
and one ``djctl_task_results`` row, both inserted on Django's own connection to the
backend's database: inside ``transaction.atomic()`` they commit or roll back with the
caller's data. Idle workers are woken after the commit.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import DatabaseError, connections, transaction
from django.utils import timezone

from djctl import handlers, payload
from djctl.contrib.django import compat
from djctl.contrib.django.database import UnsupportedDatabase, url_for, utcnow
from djctl.contrib.django.job import TaskJob
from djctl.contrib.django.results import Results, StoredResult, present, to_task_result
from djctl.limits import Limits
from djctl.queue import doorbell, migrations

APP = "djctl.contrib.django"
DEFAULT_RETENTION = timedelta(days=7)

payload.register_module(TaskJob.__module__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DjctlTask(compat.Task):
    """A Django task with djctl's per-task limits (``@task(max_attempts=3, max_run_time=60)`` where
    Django hands extra decorator arguments to the backend's task class)."""

    max_attempts: int | None = None
    max_run_time: float | None = None
    # djctl's limits (djctl.enqueue's options), each a value or a function of the call's
    # arguments: @task(concurrency_key=lambda account_id: f"account:{account_id}").
    concurrency_key: Any = None
    concurrency_limit: Any = None
    unique_key: Any = None
    unique_while: Any = None
    throttle: Any = None


class DjctlBackend(compat.BaseTaskBackend):
    """Django's tasks backend on djctl.

    ``OPTIONS``: ``DATABASE`` (Django's alias, default ``"default"``), ``MAX_ATTEMPTS``,
    ``MAX_RUN_TIME`` (seconds), ``RESULT_RETENTION`` (seconds a finished result is kept,
    default a week; ``None`` keeps results until ``manage.py djctl_prune``).
    """

    task_class = DjctlTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        self.database = str(self.options.get("DATABASE", "default"))
        self.max_attempts = self.options.get("MAX_ATTEMPTS")
        self.max_run_time = self.options.get("MAX_RUN_TIME")
        retention = self.options.get("RESULT_RETENTION", DEFAULT_RETENTION)
        self.retention = retention.total_seconds() if isinstance(retention, timedelta) else retention

    def validate_task(self, task: Any) -> None:
        """Django's rules, and djctl's limits positive whole numbers where given."""
        super().validate_task(task)
        for name in ("max_attempts", "max_run_time"):
            value = getattr(task, name, None)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise compat.InvalidTaskError(f"{name} must be a positive number, got {value!r}.")

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Insert the task's job and result in the caller's transaction on the backend's database.

        Arguments must pass Django's JSON rule; TypeError or ValueError before anything is written.
        """
        self.validate_task(task)
        args = json.loads(json.dumps(compat.normalize_json(list(args))))
        kwargs = json.loads(json.dumps(compat.normalize_json(dict(kwargs))))
        now = utcnow()
        result_id = str(uuid.uuid4())
        job = TaskJob(
            result_id=result_id, task_path=task.module_path, backend=self.alias, database=self.database,
            arguments=json.dumps({"args": args, "kwargs": kwargs}),
            max_attempts=getattr(task, "max_attempts", None) or self.max_attempts,
            max_run_time=getattr(task, "max_run_time", None) or self.max_run_time,
            retention=self.retention,
        )
        handler = payload.dumps(handlers.encode_job(job))
        limits = _limits(task, args, kwargs)
        results = Results(self.database)
        with transaction.atomic(using=self.database):
            # delayed_job runs lower numbers first; Django runs higher priorities first.
            job_id, added = results.insert_job(handler, -task.priority, task.queue_name,
                                               _utc(task.run_after) or now, now, limits)
            if not added:  # a queued job holds the unique key: it stands for this call
                return self._existing(job_id, limits["unique_key"])
            results.insert(result_id, job_id, task.module_path, self.alias, task.queue_name, task.priority,
                           _utc(task.run_after), args, kwargs, now)
        url = url_for(self.database)
        transaction.on_commit(lambda: doorbell.ring_for(url), using=self.database)
        result = to_task_result(StoredResult(
            id=result_id, task_path=task.module_path, backend=self.alias, queue_name=task.queue_name,
            priority=task.priority, run_after=task.run_after, args=args, kwargs=kwargs, status="READY",
            enqueued_at=now, started_at=None, last_attempted_at=None, finished_at=None, errors=[], worker_ids=[],
            return_value=None), task)
        compat.task_enqueued.send(type(self), task_result=result)
        return result

    def _existing(self, job_id: int, key: str) -> Any:
        result_id = Results(self.database).result_of(job_id)
        if result_id is None:
            raise ValueError(f"unique key {key!r} is held by job {job_id}, which is not a Django task")
        return self._get_result(result_id)

    def get_result(self, result_id: str) -> Any:
        """The task's result as stored now; ``TaskResultDoesNotExist`` if there is none (or it was pruned).

        Called from async code (``result.refresh()`` in a coroutine), it reads on a thread
        of its own, as Django allows no database access on the event loop's thread.
        """
        if _in_event_loop():
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(_closing_connections, self._get_result, result_id).result()
        return self._get_result(result_id)

    def _get_result(self, result_id: str) -> Any:
        stored = Results(self.database).get(str(result_id)) if len(str(result_id)) <= 64 else None
        if stored is None:
            raise compat.TaskResultDoesNotExist(result_id)
        from djctl.contrib.django.job import load_task

        try:
            task = load_task(stored.task_path)
        except payload.HandlerError as e:
            raise compat.TaskResultDoesNotExist(f"{result_id}: {e}") from None
        task = task.using(priority=stored.priority, queue_name=stored.queue_name, backend=stored.backend,
                          run_after=present(stored.run_after))
        return to_task_result(stored, task)

    def prune(self, older_than: timedelta | None = None) -> int:
        """Delete results finished more than ``older_than`` (default: the retention) ago; how many."""
        keep = older_than if older_than is not None else timedelta(seconds=self.retention or 0)
        return Results(self.database).prune(utcnow() - keep)

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        """The app installed, a database djctl runs on, and (when checked) djctl's tables current."""
        yield from super().check(**kwargs)
        if not apps.is_installed(APP):
            yield checks.Error(f"{APP!r} is not in INSTALLED_APPS", hint=f"Add {APP!r} to INSTALLED_APPS.",
                               obj=f"TASKS[{self.alias!r}]", id="djctl.E001")
        if self.database not in settings.DATABASES:
            yield checks.Error(f"OPTIONS DATABASE {self.database!r} is not one of DATABASES",
                               obj=f"TASKS[{self.alias!r}]", id="djctl.E002")
            return
        try:
            url_for(self.database)
        except UnsupportedDatabase as e:
            yield checks.Error(str(e), obj=f"TASKS[{self.alias!r}]", id="djctl.E003")
            return
        yield from self.check_schema(kwargs.get("databases") or ())

    def check_schema(self, databases: Iterable[str]) -> Iterable[checks.CheckMessage]:
        """djctl.W001 if djctl's tables are missing or old in the backend's database, when it is among ``databases``."""
        if self.database not in databases or self.database not in settings.DATABASES:
            return
        try:
            with connections[self.database].cursor() as cursor:
                tables = connections[self.database].introspection.table_names(cursor)
                version = 0
                if migrations.schema_migrations.name in tables:
                    cursor.execute(f"SELECT MAX(version) FROM {migrations.schema_migrations.name}")
                    version = cursor.fetchone()[0] or 0
        except DatabaseError as e:
            yield checks.Warning(f"cannot read djctl's tables in database {self.database!r}: {e}",
                                 id="djctl.W002")
            return
        if version < migrations.LATEST:
            # A warning, not an error: an error would stop the very `migrate` that fixes it.
            yield checks.Warning(f"djctl's tables in database {self.database!r} are missing or out of date",
                                 hint="Run `python manage.py migrate`.", id="djctl.W001")


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _closing_connections(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    finally:
        connections.close_all()


def _limits(task: Any, args: list, kwargs: dict) -> dict:
    """The task's limit columns for this call (its functions applied to the arguments);
    TypeError or ValueError, naming the option, before anything is written."""
    given = {}
    for name in ("concurrency_key", "concurrency_limit", "unique_key", "unique_while", "throttle"):
        value = getattr(task, name, None)
        given[name] = value(*args, **kwargs) if callable(value) else value
    return Limits(**given).validated().columns()


def _utc(when: datetime | None) -> datetime | None:
    """A time from Django code as aware UTC: naive means the current time zone (USE_TZ = False)."""
    if when is None:
        return None
    if timezone.is_naive(when):
        when = timezone.make_aware(when)
    return when.astimezone(UTC)


