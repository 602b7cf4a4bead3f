"""djctl.dburl reads database URLs as SQLAlchemy does (issue 20: the commands that need no
database check the URL without importing SQLAlchemy) and refuses the same ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from djctl import dburl
from djctl.config import ConfigError
from djctl.queue import engines

GOOD = [
    "sqlite:///delayed_jobs.sqlite3",
    "sqlite:////var/lib/app/jobs.sqlite3",
    "postgresql://app@db/app",
    "postgres://app:s%40cret@db:5433/app?sslmode=require",
    "postgresql+psycopg://app@[::1]:5432/app",
    "mysql://root@127.0.0.1:3306/test",
    "mariadb://root@127.0.0.1/test?charset=utf8mb4",
    "mysql+pymysql://u:p@h/d",
]


@pytest.mark.parametrize("url", GOOD)
def test_parts_are_sqlalchemys(url):
    mine, theirs = dburl.parse(url), engines.normalize_url(url)
    assert mine.drivername == theirs.drivername
    assert mine.backend == theirs.get_backend_name()
    assert mine.database == theirs.database
    assert mine.host == theirs.host
    assert mine.username == theirs.username
    assert (int(mine.port) if mine.port else None) == theirs.port


@pytest.mark.parametrize(("url", "says"), [
    ("not a url", "is not a URL"),
    ("oracle://scott@db/orcl", "djctl supports sqlite, postgresql and mysql"),
    ("sqlite://", "in-memory SQLite"),
    ("sqlite:///:memory:", "in-memory SQLite"),
    ("postgresql://app@db:fivefour/app", "is not a number"),
])
def test_refused_with_one_line_by_both(url, says):
    with pytest.raises(ConfigError, match=says) as mine:
        dburl.parse(url)
    with pytest.raises(ConfigError) as theirs:
        engines.normalize_url(url)
    assert str(mine.value) == str(theirs.value)
    assert "\n" not in str(mine.value)


def test_an_unsupported_url_is_shown_without_its_password():
    with pytest.raises(ConfigError) as e:
        dburl.parse("oracle://scott:tiger@db/orcl")
    assert "tiger" not in str(e.value) and "***" in str(e.value)


def test_identity_tells_databases_apart(tmp_path: Path):
    here = dburl.parse("sqlite:///jobs.sqlite3").identity(tmp_path)
    assert here == dburl.parse(f"sqlite:///{tmp_path / 'jobs.sqlite3'}").identity(Path("/"))
    assert here != dburl.parse("sqlite:///other.sqlite3").identity(tmp_path)
    with_password = dburl.parse("postgresql://app:secret@db/app").identity(tmp_path)
    assert with_password == dburl.parse("postgres://app@db/app").identity(tmp_path)
    assert "secret" not in with_password
    assert with_password != dburl.parse("postgresql://app@db/other").identity(tmp_path)


@pytest.mark.parametrize("url, driver", [
    ("postgresql+asyncpg://app@db/app", "postgresql+psycopg"),
    ("postgresql+psycopg_async://app@db/app", "postgresql+psycopg"),
    ("mysql+aiomysql://app@db/app", "mysql+pymysql"),
    ("mysql+asyncmy://app@db/app", "mysql+pymysql"),
    ("sqlite+aiosqlite:///jobs.sqlite3", "sqlite"),
    ("postgresql+psycopg2://app@db/app", "postgresql+psycopg2"),
])
def test_an_apps_async_url_names_the_database_djctl_reaches_with_its_own_driver(url, driver):
    assert dburl.parse(url).drivername == driver
