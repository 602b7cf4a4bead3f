"""The one "now": timezone-aware UTC for people and APIs, naive UTC as the tables store it."""

from __future__ import annotations

from datetime import datetime, timezone


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def utc_naive(when: datetime) -> datetime:
    """``when`` as naive UTC, as the database stores it; a naive ``when`` is taken as UTC already."""
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when


def utcnow() -> datetime:
    """The current time as naive UTC, as the database stores it."""
    return datetime.now(timezone.utc).replace(tzinfo=None)
