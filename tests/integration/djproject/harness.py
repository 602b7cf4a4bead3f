"""Django set up once per pytest process on every configured database, and real djctl workers for it.

Each database kind is one Django alias ("default" is SQLite) with a task backend of the
same name; tests pick a kind with the ``django_db`` fixture and run tasks through
``python -m django djctl work``: the management command, the boot module, a real worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.commands import ROOT
from tests.support.databases import IN_CI, KINDS, URLS, _errors, _server_database

SETTINGS = "tests.integration.djproject.settings"
ALIASES = {"sqlite": "default", "postgresql": "postgresql", "mysql": "mysql"}
_urls: dict[str, str] = {}


def django_urls() -> dict[str, str]:
    """Django alias -> database URL, Django set up and migrated on each (once per process)."""
    if _urls:
        return _urls
    directory = Path(tempfile.mkdtemp(prefix="djctl-django-"))
    _urls["default"] = f"sqlite:///{directory / 'django.sqlite3'}"
    for kind in KINDS:
        if kind != "sqlite":
            url = _server_database(kind)
            if url is not None:
                _urls[ALIASES[kind]] = url
    os.environ["DJCTL_TEST_DJANGO_DATABASES"] = json.dumps(_urls)
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    import django
    from django.core.management import call_command

    django.setup()
    for alias in _urls:
        call_command("migrate", database=alias, verbosity=0)
    return _urls


@dataclass
class DjangoDB:
    kind: str
    alias: str
    url: str
    tmp_path: Path

    def env(self) -> dict[str, str]:
        """Environment for a worker or manage.py command on this database."""
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE=SETTINGS,
            DJCTL_TEST_DJANGO_DATABASES=json.dumps(_urls),
            DJ_DATABASE_URL=self.url,
            DJ_SLEEP_DELAY="0.2",
            DJ_STATE_DIR=str(self.tmp_path / ".djctl"),
            DJCTL_TEST_NOTES=str(self.tmp_path / "notes.txt"),
            DJCTL_TEST_SIGNAL_LOG=str(self.tmp_path / "signals.txt"),
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
        )
        env.pop("DJ_APP", None)
        return env

    def notes(self) -> list[str]:
        path = self.tmp_path / "notes.txt"
        return path.read_text().splitlines() if path.exists() else []

    def signals(self) -> list[str]:
        path = self.tmp_path / "signals.txt"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(params=KINDS)
def django_db(request, tmp_path: Path) -> DjangoDB:
    """One database kind, its djctl and shop tables emptied."""
    kind = request.param
    urls = django_urls()
    alias = ALIASES[kind]
    if alias not in urls:
        message = f"{kind} is not reachable at {URLS[kind]}: {_errors.get(kind)}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from django.db import connections

    with connections[alias].cursor() as cursor:
        for table in ("djctl_task_results", "delayed_jobs", "shop_order"):
            cursor.execute(f"DELETE FROM {table}")
    return DjangoDB(kind, alias, urls[alias], tmp_path)


class Worker:
    """``python -m django djctl work`` on a database, its output in a file."""

    def __init__(self, db: DjangoDB, *args: str):
        self.log = db.tmp_path / "worker.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "django", "djctl", "work", *args], env=db.env(),
                                     cwd=db.tmp_path, stdout=self._out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@pytest.fixture
def worker_factory(django_db: DjangoDB) -> Iterator:
    started: list[Worker] = []

    def start(*args: str) -> Worker:
        w = Worker(django_db, *args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()
