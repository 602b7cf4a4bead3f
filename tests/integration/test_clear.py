"""``djctl clear``, run as a user runs it: jobs and recurring schedules counted apart, and a
queue with no job said so (exit 0, nothing changed)."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import djctl
from djctl.schedules import schedule, schedules
from tests.jobs import Fail
from tests.support.commands import djctl_cmd
from tests.support.rows import count


def clear(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(djctl_cmd("clear", *args), env=env, capture_output=True, text=True, timeout=60)


def test_clear_says_how_many_jobs_and_recurring_schedules_it_removed(db_url: str, djctl_env: dict) -> None:
    djctl.enqueue_many([Fail()] * 2, queue="mail")
    djctl.enqueue(Fail())
    schedule(Fail(), every=timedelta(hours=1), key="hourly", queue="mail")
    schedule(Fail(), every=timedelta(hours=1), key="daily")

    r = clear(djctl_env, "--queue", "mail")
    assert (r.returncode, r.stdout, r.stderr) == (0, "Deleted 2 jobs and 1 recurring schedule from queue mail.\n", "")
    assert [s.key for s in schedules()] == ["daily"] and count(db_url) == 2

    r = clear(djctl_env)
    assert (r.returncode, r.stdout) == (0, "Deleted 1 job and 1 recurring schedule.\n")
    assert count(db_url) == 0


def test_clear_of_a_queue_with_no_job_says_so_and_changes_nothing(db_url: str, djctl_env: dict) -> None:
    djctl.enqueue_many([Fail()] * 2, queue="mail")
    r = clear(djctl_env, "--queue", "nosuch")
    assert (r.returncode, r.stdout, r.stderr) == (0, "No job in queue nosuch: nothing deleted.\n", "")
    assert count(db_url) == 2
