"""Database URLs read without SQLAlchemy: the check every command makes, and the one
string per database that tells whether two settings point at the same one.

Commands that never touch the database (``ps``, ``scale``, ``down``, ``restart``,
``logs``) check the URL and compare databases with this module alone, so they start
without importing SQLAlchemy and the drivers (about 0.2 s). The pattern is SQLAlchemy's
own (``sqlalchemy.engine.url._parse_url``): what this module accepts, ``make_url`` parses
the same way, and ``queue.engines.normalize_url`` runs this check first, so every command
refuses a bad URL with the same line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from djctl.config import ConfigError

_PATTERN = re.compile(
    r"""
    (?P<name>[\w\+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6host>[^/\?]+)\]|(?P<ipv4host>[^/:\?]+))?(?::(?P<port>[^/\?]*))?)?
    (?:/(?P<database>[^\?]*))?
    (?:\?(?P<query>.*))?
    """,
    re.X,
)

# The driver djctl uses where a URL names none (psycopg 3, PyMySQL).
DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}
BACKENDS = ("sqlite", "postgresql", "mysql", "mariadb")
# An application's async URL (FastAPI, SQLAlchemy's asyncio) names a database djctl reaches
# with its own synchronous driver.
ASYNC_DRIVERS = {"asyncpg", "psycopg_async", "aiomysql", "asyncmy", "aiosqlite"}


class DatabaseFileError(ConfigError):
    """A SQLite file djctl will not create or keep using: it was deleted or replaced
    under running workers."""


@dataclass(frozen=True)
class DatabaseUrl:
    """A database URL's parts, the driver chosen (``drivername``)."""

    drivername: str
    username: str | None
    host: str | None
    port: str | None
    database: str | None
    query: str | None

    @property
    def backend(self) -> str:
        return self.drivername.split("+", 1)[0]

    def identity(self, cwd: Path) -> str:
        """One string per database: a SQLite file by its absolute path (relative to
        ``cwd``), a server database by its URL without password."""
        if self.backend == "sqlite":
            assert self.database is not None  # parse() refuses a SQLite URL without a file
            return "sqlite:" + str((cwd / self.database).resolve())
        user = f"{self.username}@" if self.username else ""
        port = f":{self.port}" if self.port else ""
        query = f"?{self.query}" if self.query else ""
        return f"{self.drivername}://{user}{self.host or ''}{port}/{self.database or ''}{query}"


def parse(url: str) -> DatabaseUrl:
    """``url`` checked as djctl checks it everywhere; ConfigError with one line if
    it is not a URL, names a database djctl does not support, or an in-memory SQLite."""
    m = _PATTERN.match(url)
    if m is None:
        raise ConfigError(f"database URL {url!r} is not a URL (e.g. postgresql://user@host/db)")
    parts = m.groupdict()
    if parts["port"] and not parts["port"].isdigit():
        raise ConfigError(f"database URL {url!r}: the port {parts['port']!r} is not a number")
    backend, _, driver = parts["name"].partition("+")
    # djctl's own connections are synchronous: an app's async URL names the same database.
    name = DRIVERS.get(backend, backend) if driver in ASYNC_DRIVERS else DRIVERS.get(parts["name"], parts["name"])
    database = unquote(parts["database"]) if parts["database"] is not None else None
    parsed = DatabaseUrl(
        drivername=name,
        username=unquote(parts["username"]) if parts["username"] is not None else None,
        host=parts["ipv4host"] or parts["ipv6host"],
        port=parts["port"] or None,
        database=database,
        query=parts["query"],
    )
    if parsed.backend not in BACKENDS:
        shown = url.replace(f":{parts['password']}@", ":***@", 1) if parts["password"] is not None else url
        raise ConfigError(f"database URL {shown!r}: djctl supports sqlite, postgresql and mysql")
    if parsed.backend == "sqlite" and database in (None, "", ":memory:"):
        raise ConfigError("an in-memory SQLite database cannot be shared with workers; name a file")
    return parsed
