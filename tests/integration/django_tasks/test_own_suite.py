"""Django's own ``tests/tasks/test_tasks.py``, from Django's source distribution, with its default backend on djctl.

The file is downloaded at test time (``pip download`` of Django's sdist), never kept in
this repository: the installed Django's own on Django 6, and Django 6.0's renamed to the
backport's names under the ``django-tasks`` backport (whose sdist ships no tests). Every
test must pass as it does on Django's DummyBackend, except the four that assert the
Dummy backend's own identity or its in-memory list (named in docs/django.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

django = pytest.importorskip("django")

from tests.support.commands import ROOT  # noqa: E402 - after the importorskip above
from tests.support.databases import IN_CI, KINDS, URLS, _errors, _server_database  # noqa: E402 - after the importorskip above

# Each asserts what only Django's DummyBackend has: its class, or its in-memory `results` list.
DUMMY_ONLY = {
    "test_using_correct_backend",  # assertIsInstance(task_backends["default"], DummyBackend)
    "test_get_backend",  # assertIsInstance(noop_task.get_backend(), DummyBackend)
    "test_enqueue_task",  # default_task_backend.results == [result]
    "test_enqueue_task_async",  # default_task_backend.results == [result]
}
_LINE = re.compile(r"^(test_\w+) \(.*\) \.\.\. (ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)$")
_sdist: dict[str, Path] = {}


def _django_tests(tmp_root: Path) -> Path:
    """The ``tests/tasks`` folder of Django's sdist, downloaded once per process."""
    if "dir" in _sdist:
        return _sdist["dir"]
    from djctl.contrib.django import compat

    if compat.FRAMEWORK == "django.tasks":
        spec, extra = f"django=={django.get_version()}", []
    else:
        # The backport follows Django 6.0's API; its tests need Python 3.12 only to install.
        spec, extra = "django>=6.0,<6.1", ["--python-version", "3.12"]
    where = tmp_root / "sdist"
    done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                           *extra, "-d", str(where), spec], capture_output=True, text=True, timeout=600, check=False)
    archives = list(where.glob("*.tar.gz"))
    if done.returncode != 0 or not archives:
        message = f"cannot download Django's source distribution ({spec}): {done.stderr.strip()[-300:]}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with tarfile.open(archives[0]) as archive:
        members = [m for m in archive.getmembers() if "/tests/tasks/" in m.name and m.isfile()]
        archive.extractall(where, members=members, filter="data")
    _sdist["dir"] = next(where.glob("*/tests"))
    return _sdist["dir"]


def _run(tests: Path, url: str, mode: str, scratch: Path) -> dict[str, str]:
    copy = scratch / mode
    shutil.copytree(tests / "tasks", copy / "tasks")
    done = subprocess.run([sys.executable, "-m", "tests.integration.djproject.own_suite", str(copy), url, mode],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    outcomes = {m.group(1): m.group(2) for m in map(_LINE.match, done.stdout.splitlines()) if m}
    assert outcomes, f"no test ran:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return outcomes


@pytest.mark.parametrize("kind", KINDS)
def test_djangos_own_task_tests_pass_on_djctl(kind: str, tmp_path: Path, tmp_path_factory) -> None:
    tests = _django_tests(tmp_path_factory.getbasetemp())
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'own.sqlite3'}"
    else:
        url = _server_database(kind)
        if url is None:
            message = f"{kind} is not reachable at {URLS[kind]}: {_errors.get(kind)}"
            pytest.fail(message) if IN_CI else pytest.skip(message)
    baseline = _run(tests, url, "baseline", tmp_path)
    ours = _run(tests, url, "djctl", tmp_path)
    assert set(ours) == set(baseline)
    assert len(ours) >= 30
    failed_baseline = {name for name, outcome in baseline.items() if outcome in ("FAIL", "ERROR")}
    failed_ours = {name for name, outcome in ours.items() if outcome in ("FAIL", "ERROR")}
    assert failed_ours == failed_baseline | DUMMY_ONLY
