"""Run Django's own ``tests/tasks/test_tasks.py`` with its default backend pointed at ``DjctlBackend``.

    python -m tests.integration.djproject.own_suite TESTS_DIR DATABASE_URL djctl|baseline

TESTS_DIR holds the ``tasks`` folder of Django's source distribution (downloaded by the
test that calls this). With ``djctl`` the test case's default backend becomes
:class:`SuiteBackend` and the case may use the default database; with ``baseline`` it
keeps Django's DummyBackend. Under the ``django_tasks`` backport (Django 5.2) the file's
imports are renamed to the backport's. Prints unittest's verbose report; exits 0 however
the tests went.
"""

from __future__ import annotations

import sys
import tempfile
import unittest
from pathlib import Path

from djctl.contrib.django.backend import DjctlBackend

DUMMY = '"BACKEND": "django.tasks.backends.dummy.DummyBackend",'
OURS = '"BACKEND": "tests.integration.djproject.own_suite.SuiteBackend",'


class SuiteBackend(DjctlBackend):
    """DjctlBackend with the ``clear()`` Django's test case calls in its setUp."""

    def clear(self) -> None:
        """Delete every job and result in the backend's database."""
        from django.db import connections

        with connections[self.database].cursor() as cursor:
            cursor.execute("DELETE FROM djctl_task_results")
            cursor.execute("DELETE FROM delayed_jobs")


# Django 6's names -> the django_tasks backport's, for running Django's file on Django 5.2.
BACKPORT = [
    ("from django.tasks.exceptions import (", "from django_tasks.exceptions import ("),
    ("    InvalidTask,\n", "    InvalidTaskError as InvalidTask,\n"),
    ("    InvalidTaskBackend,\n", "    InvalidTaskBackendError as InvalidTaskBackend,\n"),
    ("django.tasks.backends.", "django_tasks.backends."),
    ("from django.tasks.base import", "from django_tasks.base import"),
    ("from django.tasks import", "from django_tasks import"),
    ('assertLogs("django.tasks")', 'assertLogs("django_tasks")'),
]


def prepare(tests_dir: Path, mode: str, backport: bool) -> None:
    """Point the test case at SuiteBackend in Django's test file (in the downloaded copy)."""
    path = tests_dir / "tasks" / "test_tasks.py"
    text = path.read_text()
    if DUMMY not in text or "class TaskTestCase(SimpleTestCase):" not in text:
        raise SystemExit(f"{path}: the layout this runner expects has changed")
    if mode == "djctl":
        text = text.replace(DUMMY, OURS, 1)
        text = text.replace("class TaskTestCase(SimpleTestCase):",
                            'class TaskTestCase(SimpleTestCase):\n    databases = {"default"}', 1)
    if backport:
        for old, new in BACKPORT:
            # The exception names are renamed in the import only; the bodies use the aliases.
            text = text.replace(old, new, 1 if old.startswith("    Invalid") else -1)
        helpers = tests_dir / "tasks" / "tasks.py"
        helpers.write_text(helpers.read_text().replace("from django.tasks import", "from django_tasks import"))
    path.write_text(text)


def main(tests_dir: str, url: str, mode: str) -> None:
    import django
    from django.conf import settings
    from django.test.utils import get_runner

    from djctl.contrib.django import compat
    from tests.integration.djproject.settings import django_database

    tests = Path(tests_dir)
    prepare(tests, mode, backport=compat.FRAMEWORK == "django_tasks")
    sys.path.insert(0, str(tests))
    database = django_database(url)
    scratch = Path(tempfile.mkdtemp(prefix="djctl-own-suite-"))
    if database["ENGINE"].endswith("sqlite3"):
        database["TEST"] = {"NAME": str(scratch / "test.sqlite3")}
    settings.configure(
        SECRET_KEY="djctl-own-suite",
        USE_TZ=True,
        INSTALLED_APPS=["djctl.contrib.django", "tasks"],
        DATABASES={"default": database},
        TASKS={"default": {"BACKEND": "djctl.contrib.django.DjctlBackend"}},
    )
    django.setup()
    runner = get_runner(settings)(verbosity=0, interactive=False)
    old = runner.setup_databases()
    try:
        suite = unittest.defaultTestLoader.loadTestsFromName("tasks.test_tasks")
        unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    finally:
        runner.teardown_databases(old)


if __name__ == "__main__":
    main(*sys.argv[1:4])
