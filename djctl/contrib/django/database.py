"""One of Django's databases, seen by djctl: its URL for djctl's engine, and values for its cursor.

Django tasks are written on Django's own connection (so they commit with the caller);
djctl's workers reach the same database through its URL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import connections
from sqlalchemy.engine import URL

_SCHEMES = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}


class UnsupportedDatabase(ValueError):
    """The Django database is not one djctl runs on; the message says which it is."""


def url_for(alias: str) -> str:
    """The SQLAlchemy URL of Django's database ``alias`` (SQLite, PostgreSQL or MySQL/MariaDB)."""
    conn = connections[alias]
    vendor = conn.vendor
    params = conn.settings_dict
    if vendor not in _SCHEMES:
        raise UnsupportedDatabase(
            f"Django database {alias!r} is {vendor}; djctl runs on SQLite, PostgreSQL and MySQL/MariaDB"
        )
    if vendor == "sqlite":
        name = str(params.get("NAME") or "")
        if not name or name == ":memory:" or name.startswith("file:"):
            raise UnsupportedDatabase(
                f"Django database {alias!r} is an in-memory SQLite database, which workers cannot share; name a file"
            )
        return URL.create("sqlite", database=name).render_as_string(hide_password=False)
    options = params.get("OPTIONS") or {}
    port = params.get("PORT")
    url = URL.create(
        _SCHEMES[vendor],
        username=params.get("USER") or None,
        password=params.get("PASSWORD") or None,
        host=params.get("HOST") or None,
        port=int(port) if port else None,
        database=params.get("NAME") or None,
        query={k: str(v) for k, v in options.items() if k in ("sslmode", "charset") and v},
    )
    return url.render_as_string(hide_password=False)


def to_db(when: datetime | None, vendor: str) -> Any:
    """``when`` as djctl stores it (naive UTC; on SQLite the text SQLAlchemy writes)."""
    if when is None:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    if vendor == "sqlite":
        return when.strftime("%Y-%m-%d %H:%M:%S.%f")
    return when


def from_db(value: Any) -> datetime | None:
    """A timestamp read back through Django's cursor, as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utcnow() -> datetime:
    """Now, aware UTC."""
    return datetime.now(UTC)
