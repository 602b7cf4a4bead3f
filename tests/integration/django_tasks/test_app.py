"""The Django app: `manage.py migrate` makes djctl's tables, system checks, and `manage.py djctl <command>`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("django")

from djctl.queue import engines as store
from djctl.queue import migrations
from tests.integration.djproject.harness import (
    SETTINGS,
    DjangoDB,
    django_urls,
)
from tests.support.commands import ROOT
from tests.support.databases import KINDS, fresh_database


@pytest.fixture(params=KINDS)
def empty_url(request, tmp_path: Path) -> Iterator[str]:
    """A database without any table, of each kind."""
    yield from fresh_database(request.param, tmp_path)


def _manage(url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=SETTINGS, DJCTL_TEST_DJANGO_DATABASES=json.dumps({"default": url}),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for name in ("DJ_DATABASE_URL", "DATABASE_URL", "DJ_APP"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "django", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def test_migrate_creates_djctl_tables_and_the_check_follows(empty_url: str, tmp_path: Path) -> None:
    before = _manage(empty_url, "check", "--database", "default", cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    assert "djctl.W001" in before.stderr and "Run `python manage.py migrate`." in before.stderr

    done = _manage(empty_url, "migrate", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Applying djctl.0001_djctl_tables... OK" in done.stdout
    engine = store.make_engine(empty_url)
    try:
        assert migrations.current_version(engine) == migrations.LATEST
    finally:
        engine.dispose()

    after = _manage(empty_url, "check", "--database", "default", cwd=tmp_path)
    assert after.returncode == 0 and "djctl." not in after.stderr


def test_manage_py_djctl_runs_any_djctl_command_on_djangos_database(django_db: DjangoDB) -> None:
    from tests.integration.djproject.shop import tasks

    tasks.note.using(backend=django_db.alias).enqueue("counted")
    tasks.mail.using(backend=django_db.alias).enqueue("counted")
    env = django_db.env()
    env.pop("DJ_DATABASE_URL")  # from Django's DATABASES, through the task backend's OPTIONS
    env["DJCTL_TEST_DJANGO_DATABASES"] = json.dumps({"default": django_db.url})
    done = subprocess.run([sys.executable, "-m", "django", "djctl", "stats", "--json"], env=env,
                          cwd=django_db.tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert sorted((r["queue"], r["ready"]) for r in rows) == [("default", 1), ("mail", 1)]

    bad = subprocess.run([sys.executable, "-m", "django", "djctl", "no-such-command"], env=env,
                         cwd=django_db.tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("djctl: ")


def test_checks_name_a_missing_app_and_an_unknown_database() -> None:
    django_urls()
    from django.apps import apps

    from djctl.contrib.django.backend import DjctlBackend

    backend = DjctlBackend("other", {"OPTIONS": {"DATABASE": "nope"}})
    assert [m.id for m in backend.check()] == ["djctl.E002"]
    apps.set_installed_apps(["tests.integration.djproject.shop"])
    try:
        ids = [m.id for m in DjctlBackend("default", {}).check()]
    finally:
        apps.unset_installed_apps()
    assert ids == ["djctl.E001"]
