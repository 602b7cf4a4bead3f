"""Django's tasks framework on djctl, through a real worker: a conformance suite after Django's backend tests."""

from __future__ import annotations

from datetime import timedelta

import pytest

pytest.importorskip("django")

from tests.integration.djproject.harness import DjangoDB
from tests.support.waiting import wait_for

# A worker starts Django before its first job; on a loaded machine that takes a while.
WAIT = 90


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
    wait_for(lambda: _finished(result), timeout=WAIT, message="the task to finish")
    assert result.status == "SUCCESSFUL"
    assert result.return_value == 5
    assert result.enqueued_at <= result.started_at <= result.last_attempted_at <= result.finished_at
    assert len(result.worker_ids) == 1 and result.worker_ids[0].startswith("host:")
    assert result.errors == []


def test_async_task_returns_its_value(django_db: DjangoDB, worker_factory) -> None:
    result = _tasks().add_async.using(backend=django_db.alias).enqueue(4, 5)
    worker_factory()
    wait_for(lambda: _finished(result), timeout=WAIT, message="the async task to finish")
    assert result.status == "SUCCESSFUL" and result.return_value == 9


@pytest.mark.parametrize("name, exception", [
    ("fail", "builtins.ValueError"),
    ("exit_task", "builtins.SystemExit"),
    ("interrupt_task", "builtins.KeyboardInterrupt"),
    ("unserialisable", "builtins.TypeError"),
])
def test_exceptions_fail_the_task_after_its_last_attempt(django_db: DjangoDB, worker_factory, name, exception):
    task = getattr(_tasks(), name).using(backend=django_db.alias)
    result = task.enqueue("boom") if name == "fail" else task.enqueue()
    w = worker_factory()
    wait_for(lambda: _finished(result), timeout=WAIT, message=f"{name} to finish")
    assert result.status == "FAILED"
    assert [e.exception_class_path for e in result.errors] == [exception]
    assert exception.rpartition(".")[2] in result.errors[0].traceback
    assert result.finished_at is not None and len(result.worker_ids) == 1
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    assert w.proc.poll() is None  # the worker outlives SystemExit and KeyboardInterrupt in a task


def test_a_failed_attempt_waits_for_its_retry_as_ready(django_db: DjangoDB, worker_factory) -> None:
    result = _tasks().fail_then_wait.using(backend=django_db.alias).enqueue("again")
    worker_factory()
    wait_for(lambda: (result.refresh(), result.errors)[1], timeout=WAIT, message="the first attempt to fail")
    assert result.status == "READY"
    assert not result.is_finished and result.finished_at is None
    assert [e.exception_class.__name__ for e in result.errors] == ["ValueError"]
    assert result.attempts == 1


def test_takes_context_gets_the_attempt_and_its_result(django_db: DjangoDB, worker_factory) -> None:
    result = _tasks().with_context.using(backend=django_db.alias).enqueue(7)
    worker_factory()
    wait_for(lambda: _finished(result), timeout=WAIT, message="the context task to finish")
    assert result.return_value == {"attempt": 1, "id": result.id, "x": 7}


def test_higher_django_priority_runs_first(django_db: DjangoDB, worker_factory) -> None:
    note = _tasks().note.using(backend=django_db.alias)
    results = [note.using(priority=p).enqueue(f"p{p}") for p in (-10, 0, 50, 100, -100)]
    worker_factory()
    wait_for(lambda: all(_finished(r) for r in results), timeout=WAIT, message="every task to finish")
    assert django_db.notes() == ["p100", "p50", "p0", "p-10", "p-100"]


def test_run_after_waits(django_db: DjangoDB, worker_factory) -> None:
    from django.utils import timezone

    note = _tasks().note.using(backend=django_db.alias)
    later = note.using(run_after=timezone.now() + timedelta(seconds=3)).enqueue("later")
    now = note.enqueue("now")
    worker_factory()
    wait_for(lambda: _finished(later), timeout=WAIT, message="the deferred task to run")
    assert now.status == "READY" or _finished(now)
    assert django_db.notes() == ["now", "later"]
    assert later.started_at >= later.task.run_after


def test_queues(django_db: DjangoDB, worker_factory) -> None:
    tasks = _tasks()
    mail = tasks.mail.using(backend=django_db.alias).enqueue("hello")
    other = tasks.note.using(backend=django_db.alias, queue_name="other").enqueue("other")
    worker_factory("--queues", "mail")
    wait_for(lambda: _finished(mail), timeout=WAIT, message="the mail task")
    other.refresh()
    assert other.status == "READY"
    assert django_db.notes() == ["mail hello"]


def test_an_unknown_queue_is_refused(django_db: DjangoDB) -> None:
    from djctl.contrib.django import compat

    with pytest.raises(compat.InvalidTaskError, match="Queue 'nope' is not valid"):
        _tasks().note.using(backend=django_db.alias, queue_name="nope")


def test_arguments_follow_djangos_json_rule(django_db: DjangoDB) -> None:
    from django.db import connections

    task = _tasks().not_json_arg.using(backend=django_db.alias)
    with pytest.raises(TypeError, match="Unsupported type"):
        task.enqueue(object())
    with connections[django_db.alias].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM delayed_jobs")
        assert cursor.fetchone()[0] == 0
    assert task.enqueue((1, 2)).args == [[1, 2]]


def test_signals_and_log_lines(django_db: DjangoDB, worker_factory) -> None:
    tasks = _tasks()
    ok = tasks.add.using(backend=django_db.alias).enqueue(1, 1)
    bad = tasks.fail.using(backend=django_db.alias).enqueue("no")
    w = worker_factory()
    wait_for(lambda: _finished(ok) and _finished(bad), timeout=WAIT, message="both tasks")
    wait_for(lambda: len(django_db.signals()) == 4, timeout=WAIT, message="four signals")
    assert sorted(django_db.signals()) == sorted([
        f"started {ok.id} RUNNING DjctlBackend", f"finished {ok.id} SUCCESSFUL DjctlBackend",
        f"started {bad.id} RUNNING DjctlBackend", f"finished {bad.id} FAILED DjctlBackend",
    ])
    wait_for(lambda: f"Task id={bad.id} path=tests.integration.djproject.shop.tasks.fail state=FAILED" in w.output(),
             message="the FAILED log line")
    assert f"Task id={ok.id} path=tests.integration.djproject.shop.tasks.add state=SUCCESSFUL" in w.output()


def test_get_result_by_id_and_a_missing_one(django_db: DjangoDB, worker_factory) -> None:
    from djctl.contrib.django import compat

    backend = compat.task_backends[django_db.alias]
    result = _tasks().add.using(backend=django_db.alias).enqueue(20, 22)
    worker_factory()
    wait_for(lambda: _finished(result), timeout=WAIT, message="the task")
    again = backend.get_result(result.id)
    assert (again.status, again.return_value, again.task.func) == ("SUCCESSFUL", 42, result.task.func)
    with pytest.raises(compat.TaskResultDoesNotExist):
        backend.get_result("no-such-result")


def test_pruning_deletes_finished_results_only(django_db: DjangoDB, worker_factory) -> None:
    from io import StringIO

    from django.core.management import call_command

    tasks = _tasks()
    done = tasks.add.using(backend=django_db.alias).enqueue(1, 2)
    waiting = tasks.note.using(backend=django_db.alias, queue_name="other").enqueue("stays")
    worker_factory("--queues", "default")
    wait_for(lambda: _finished(done), timeout=WAIT, message="the task")
    out = StringIO()
    call_command("djctl_prune", backend=django_db.alias, older_than=0, stdout=out)
    assert out.getvalue().strip() == "Deleted 1 task result."
    from djctl.contrib.django import compat

    with pytest.raises(compat.TaskResultDoesNotExist):
        done.refresh()
    waiting.refresh()
    assert waiting.status == "READY"


def test_the_job_row_goes_on_success_and_the_result_stays(django_db: DjangoDB, worker_factory) -> None:
    from django.db import connections

    def jobs() -> int:
        with connections[django_db.alias].cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM delayed_jobs")
            return cursor.fetchone()[0]

    result = _tasks().add.using(backend=django_db.alias).enqueue(1, 2)
    assert jobs() == 1
    worker_factory()
    wait_for(lambda: _finished(result), timeout=WAIT, message="the task")
    wait_for(lambda: jobs() == 0, timeout=WAIT, message="delayed_job's delete on success")
    result.refresh()
    assert result.status == "SUCCESSFUL" and result.return_value == 3
