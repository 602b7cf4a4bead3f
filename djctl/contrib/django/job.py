"""The djctl job that runs one Django task: an ordinary job with ``perform()`` and delayed_job's hooks.

It runs in a worker's executor child, as Django code: inherited database connections
are let go, stale ones closed around each task, Django's signals sent, and each attempt
recorded in the task's result from inside the child, on its own connection.
"""

from __future__ import annotations

import inspect
import json
import os
import time
import traceback
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.db import close_old_connections, connections
from django.utils.module_loading import import_string

from djctl import aio, payload
from djctl.contrib.django import compat
from djctl.contrib.django.results import Results, to_task_result

_PRUNE_EVERY = 60.0
_detached_pid: int | None = None
_inherited: list[Any] = []
_last_prune: dict[str, float] = {}


class TaskJob:
    """One Django task call. Its attributes are the handler's state; ``max_attempts`` and
    ``max_run_time`` (seconds), when set, override the worker's as for any djctl job."""

    def __init__(self, result_id: str, task_path: str, backend: str, database: str, arguments: str,
                 max_attempts: int | None = None, max_run_time: float | None = None,
                 retention: float | None = None):
        self.result_id = result_id
        self.task_path = task_path
        self.backend = backend
        self.database = database
        # JSON text, not data: the task's arguments are never read as djctl's tagged values.
        self.arguments = arguments
        self.max_attempts = max_attempts
        self.max_run_time = max_run_time
        self.retention = retention

    # -- delayed_job's hooks, called by the executor -----------------------------------

    def before(self, *_args: Any) -> None:
        """An attempt starts: connections made fresh, the result RUNNING, ``task_started`` sent."""
        _detach_inherited()
        close_old_connections()
        self._results().start(self.result_id)
        compat.task_started.send(sender=self._backend_class(), task_result=self._task_result())

    def perform(self) -> None:
        """Run the task (awaited if async) and keep its return value, which must be JSON."""
        task = self._task()
        arguments = json.loads(self.arguments)
        args, kwargs = list(arguments["args"]), dict(arguments["kwargs"])
        if task.takes_context:
            args.insert(0, compat.TaskContext(task_result=self._task_result(task)))
        if inspect.iscoroutinefunction(task.func):
            value = aio.finish(task.func(*args, **kwargs))
        else:
            value = task.func(*args, **kwargs)
        encoded = json.dumps(compat.normalize_json(value))
        self._results().succeed(self.result_id, encoded)
        self._finished()

    def error(self, exc: BaseException) -> None:
        """An attempt raised: the error recorded; READY for the retry, or FAILED after the last."""
        close_old_connections()
        klass = type(exc)
        path = f"{klass.__module__}.{klass.__qualname__}"
        final = self._last_attempt() or isinstance(exc, payload.RecordNotFound)
        self._results().fail_attempt(self.result_id, path, _traceback(exc), final=final)
        if final:
            self._finished()

    def failure(self, *_args: Any) -> None:
        """The job failed for good (delayed_job's hook); ``error`` has recorded it already."""

    def after(self, *_args: Any) -> None:
        close_old_connections()

    # -- helpers ----------------------------------------------------------------------

    def _results(self) -> Results:
        return Results(self.database)

    def _task(self) -> Any:
        return load_task(self.task_path)

    def _backend_class(self) -> type:
        return type(compat.task_backends[self.backend])

    def _task_result(self, task: Any = None) -> Any:

        stored = self._results().get(self.result_id)
        return to_task_result(stored, task or self._task()) if stored is not None else None

    def _last_attempt(self) -> bool:
        stored = self._results().get(self.result_id)
        limit = self.max_attempts or _worker_max_attempts()
        return stored is None or len(stored.worker_ids) >= limit

    def _finished(self) -> None:
        result = self._task_result()
        if result is not None:
            compat.task_finished.send(sender=self._backend_class(), task_result=result)
        if self.retention is not None:
            _prune(self.database, self.retention)


def load_task(path: str) -> Any:
    """The Django task at ``module.name``, imported only from an installed app or djctl's allowed packages."""
    module = path.rpartition(".")[0]
    packages = [config.name for config in apps.get_app_configs()] + list(payload.allowed_packages())
    if not module or not payload.is_allowed(module, packages):
        raise payload.HandlerError(
            f"task {path!r} is outside the installed apps and allowed packages; add its app to INSTALLED_APPS")
    try:
        task = import_string(path)
    except ImportError as e:
        raise payload.HandlerError(f"task {path!r} cannot be imported: {e}") from None
    if not isinstance(task, compat.Task):
        raise payload.HandlerError(f"{path!r} is not a Django task (decorate it with @task)")
    return task


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def _worker_max_attempts() -> int:
    from djctl import config

    return config.current().max_attempts


def _detach_inherited() -> None:
    """Let go of database connections this process inherited across fork, once per process.

    Not closed: closing a socket the parent shares would end the parent's session. Kept
    referenced, so no finalizer closes them; the child exits without running any.
    """
    global _detached_pid
    if _detached_pid == os.getpid():
        return
    _detached_pid = os.getpid()
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _inherited.append(conn.connection)
            conn.connection = None


def _prune(alias: str, retention: float) -> None:
    """Delete old finished results, at most once a minute per process and database."""
    now = time.monotonic()
    if now - _last_prune.get(alias, -_PRUNE_EVERY) < _PRUNE_EVERY:
        return
    _last_prune[alias] = now
    from djctl.contrib.django.database import utcnow

    Results(alias).prune(utcnow() - timedelta(seconds=retention))
