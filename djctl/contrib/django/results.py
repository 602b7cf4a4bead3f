"""Django task results in ``djctl_task_results``, read and written on Django's connection.

The backend inserts a row with the job; the job itself (in the worker's executor child)
records each attempt. A result outlives its job's row, which delayed_job deletes on
success, until it is pruned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from djctl.contrib.django import compat
from djctl.contrib.django.database import from_db, to_db, utcnow
from djctl.queue.gates import gate_names

_ENSURE_GATE = {
    "postgresql": "INSERT INTO djctl_gates (name) VALUES (%s) ON CONFLICT DO NOTHING",
    "sqlite": "INSERT INTO djctl_gates (name) VALUES (%s) ON CONFLICT DO NOTHING",
    "mysql": "INSERT INTO djctl_gates (name) VALUES (%s) ON DUPLICATE KEY UPDATE name = name",
}

READY, RUNNING, SUCCESSFUL, FAILED = "READY", "RUNNING", "SUCCESSFUL", "FAILED"

_COLUMNS = ("id", "job_id", "task_path", "backend", "queue_name", "priority", "run_after", "arguments", "status",
            "enqueued_at", "started_at", "last_attempted_at", "finished_at", "errors", "worker_ids", "return_value")


@dataclass(frozen=True)
class StoredResult:
    """One row of ``djctl_task_results``, its status reconciled with its job's row."""

    id: str
    task_path: str
    backend: str
    queue_name: str
    priority: int
    run_after: datetime | None
    args: list
    kwargs: dict
    status: str
    enqueued_at: datetime | None
    started_at: datetime | None
    last_attempted_at: datetime | None
    finished_at: datetime | None
    errors: list[dict]
    worker_ids: list[str]
    return_value: Any


class Results:
    """The results kept in Django's database ``alias``."""

    def __init__(self, alias: str):
        self.alias = alias

    @property
    def vendor(self) -> str:
        return connections[self.alias].vendor

    def insert_job(self, handler: str, priority: int, queue: str, run_at: datetime, now: datetime,
                   limits: dict | None = None) -> tuple[int, bool]:
        """Insert a ``delayed_jobs`` row on Django's connection, in its transaction: its id,
        and True. With a unique key a queued job holds: that job's id, and False."""
        vendor = self.vendor
        names = [n for n, v in (limits or {}).items() if v is not None]
        columns = ", ".join(["handler", "priority", "queue", "run_at", "attempts", "created_at", "updated_at", *names])
        sql = f"INSERT INTO delayed_jobs ({columns}) VALUES ({', '.join(['%s'] * (7 + len(names)))})"
        params = [handler, priority, queue, to_db(run_at, vendor), 0, to_db(now, vendor), to_db(now, vendor),
                  *((limits or {})[n] for n in names)]
        with connections[self.alias].cursor() as cursor:
            for gate in gate_names([limits or {}]):
                cursor.execute(_ENSURE_GATE[vendor], [gate])
            if (limits or {}).get("unique_key") is None:
                return self._insert(cursor, sql, params), True
            return self._insert_unique(cursor, sql, params, limits["unique_key"])  # type: ignore[index]

    def _insert(self, cursor: Any, sql: str, params: list) -> int:
        if self.vendor == "postgresql":
            cursor.execute(sql + " RETURNING id", params)
            return int(cursor.fetchone()[0])
        cursor.execute(sql, params)
        return int(cursor.lastrowid)

    def _insert_unique(self, cursor: Any, sql: str, params: list, key: str) -> tuple[int, bool]:
        """The unique index decides (see djctl.queue.inserts): insert, else the holder's id."""
        for _ in range(20):
            if self.vendor in ("postgresql", "sqlite"):
                cursor.execute(sql + " ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING RETURNING id",
                               params)
                row = cursor.fetchone()
                if row is not None:
                    return int(row[0]), True
            else:
                try:
                    with transaction.atomic(using=self.alias):  # a savepoint: the duplicate undoes only this
                        return self._insert(cursor, sql, params), True
                except IntegrityError as e:
                    if not e.args or e.args[0] != 1062:  # ER_DUP_ENTRY
                        raise
            cursor.execute("SELECT id FROM delayed_jobs WHERE unique_key = %s", [key])
            row = cursor.fetchone()
            if row is not None:
                return int(row[0]), False
        raise RuntimeError(f"unique key {key!r} was taken and freed 20 times while this task was enqueued; try again")

    def result_of(self, job_id: int) -> str | None:
        """The id of the result of job ``job_id``, if it is a Django task."""
        with connections[self.alias].cursor() as cursor:
            cursor.execute("SELECT id FROM djctl_task_results WHERE job_id = %s", [job_id])
            row = cursor.fetchone()
        return None if row is None else str(row[0])

    def insert(self, result_id: str, job_id: int, task_path: str, backend: str, queue_name: str, priority: int,
               run_after: datetime | None, args: list, kwargs: dict, now: datetime) -> None:
        """Record a task just enqueued: READY, no attempt yet."""
        vendor = self.vendor
        values = [result_id, job_id, task_path, backend, queue_name, priority, to_db(run_after, vendor),
                  json.dumps({"args": args, "kwargs": kwargs}), READY, to_db(now, vendor), None, None, None,
                  "[]", "[]", None]
        sql = (f"INSERT INTO djctl_task_results ({', '.join(_COLUMNS)}) "
               f"VALUES ({', '.join(['%s'] * len(_COLUMNS))})")
        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, values)

    def get(self, result_id: str) -> StoredResult | None:
        """The result ``result_id``, or None.

        An unfinished result's status also follows its job's row: FAILED once the job has
        failed for good, READY once an attempt that never reported back (its process was
        killed) has been released for a retry.
        """
        columns = ", ".join(f"r.{c}" for c in _COLUMNS)
        sql = (f"SELECT {columns}, j.id, j.locked_by, j.failed_at FROM djctl_task_results r "
               "LEFT JOIN delayed_jobs j ON j.id = r.job_id WHERE r.id = %s")
        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, [result_id])
            row = cursor.fetchone()
        if row is None:
            return None
        data = dict(zip(_COLUMNS, row, strict=False))
        job_exists, locked_by, failed_at = row[len(_COLUMNS):]
        status = data["status"]
        if status in (READY, RUNNING) and job_exists is not None:
            if failed_at is not None:
                status = FAILED  # its last attempt ended where no hook ran (a kill, a timeout)
            elif status == RUNNING and locked_by is None:
                status = READY  # an attempt that never reported back, released for its retry
        arguments = json.loads(data["arguments"])
        return StoredResult(
            id=data["id"], task_path=data["task_path"], backend=data["backend"], queue_name=data["queue_name"],
            priority=int(data["priority"]), run_after=from_db(data["run_after"]),
            args=arguments["args"], kwargs=arguments["kwargs"], status=status,
            enqueued_at=from_db(data["enqueued_at"]), started_at=from_db(data["started_at"]),
            last_attempted_at=from_db(data["last_attempted_at"]), finished_at=from_db(data["finished_at"]),
            errors=json.loads(data["errors"]), worker_ids=json.loads(data["worker_ids"]),
            return_value=json.loads(data["return_value"]) if data["return_value"] is not None else None,
        )

    def start(self, result_id: str) -> None:
        """An attempt begins: RUNNING, ``last_attempted_at`` now, the claiming worker's name appended."""
        vendor = self.vendor
        now = to_db(utcnow(), vendor)
        # Read, then one UPDATE, outside a transaction: on SQLite a read transaction that
        # turns into a write fails at once when the worker committed in between. Only the
        # process running the task writes its row, so nothing else changes it meanwhile.
        with connections[self.alias].cursor() as cursor:
            cursor.execute(
                "SELECT r.worker_ids, j.locked_by FROM djctl_task_results r "
                "LEFT JOIN delayed_jobs j ON j.id = r.job_id WHERE r.id = %s", [result_id])
            row = cursor.fetchone()
            if row is None:
                return
            workers = json.loads(row[0]) + [row[1] or "?"]
            cursor.execute(
                "UPDATE djctl_task_results SET status = %s, started_at = COALESCE(started_at, %s), "
                "last_attempted_at = %s, worker_ids = %s WHERE id = %s",
                [RUNNING, now, now, json.dumps(workers), result_id])

    def fail_attempt(self, result_id: str, exception_class_path: str, traceback: str, final: bool) -> None:
        """An attempt raised: its error appended; FAILED and finished if it was the last, else READY."""
        vendor = self.vendor
        with connections[self.alias].cursor() as cursor:
            cursor.execute("SELECT errors FROM djctl_task_results WHERE id = %s", [result_id])
            row = cursor.fetchone()
            if row is None:
                return
            errors = json.loads(row[0]) + [{"exception_class_path": exception_class_path, "traceback": traceback}]
            cursor.execute(
                "UPDATE djctl_task_results SET status = %s, errors = %s, finished_at = %s WHERE id = %s",
                [FAILED if final else READY, json.dumps(errors), to_db(utcnow(), vendor) if final else None,
                 result_id])

    def succeed(self, result_id: str, return_value_json: str) -> None:
        """The task returned: SUCCESSFUL, finished now, its return value kept."""
        with connections[self.alias].cursor() as cursor:
            cursor.execute(
                "UPDATE djctl_task_results SET status = %s, finished_at = %s, return_value = %s WHERE id = %s",
                [SUCCESSFUL, to_db(utcnow(), self.vendor), return_value_json, result_id])

    def prune(self, finished_before: datetime) -> int:
        """Delete the results of tasks finished before ``finished_before``; how many."""
        with connections[self.alias].cursor() as cursor:
            cursor.execute("DELETE FROM djctl_task_results WHERE finished_at < %s",
                           [to_db(finished_before, self.vendor)])
            return max(cursor.rowcount, 0)


def present(when: datetime | None) -> datetime | None:
    """A UTC time as Django shows it: aware with USE_TZ, else naive in the current time zone."""
    if when is None or settings.USE_TZ:
        return when
    return timezone.make_naive(when)


def to_task_result(stored: StoredResult, task: Any) -> Any:
    """Django's ``TaskResult`` for a stored result, of ``task``."""
    result = compat.TaskResult(
        task=task,
        id=stored.id,
        status=compat.TaskResultStatus(stored.status),
        enqueued_at=present(stored.enqueued_at),
        started_at=present(stored.started_at),
        finished_at=present(stored.finished_at),
        last_attempted_at=present(stored.last_attempted_at),
        args=stored.args,
        kwargs=stored.kwargs,
        backend=stored.backend,
        errors=[compat.TaskError(exception_class_path=e["exception_class_path"], traceback=e["traceback"])
                for e in stored.errors],
        worker_ids=list(stored.worker_ids),
    )
    object.__setattr__(result, "_return_value", stored.return_value)
    return result
