"""The one "now": the database's time, for every decision that compares times across hosts.

Claims, leases, ``run_at`` defaults, heartbeats and schedules are compared by whichever
process reads them, on whichever host. A local clock minutes off would take live claims
early or run scheduled jobs early, so djctl reads the database's clock when it connects
(and again on each worker maintenance pass and supervisor heartbeat), keeps the offset
from the local clock, and answers ``now()`` as the database's time. The offset is anchored
on the monotonic clock: a local wall clock stepped afterwards does not move djctl's now.
SQLite has no clock of its own: on the one host it lives on, the local clock is the
database's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

SKEW_WARNING = 2.0
"""Seconds of difference between the local and the database's clock worth a warning."""

_QUERIES = {
    "postgresql": "SELECT CAST(clock_timestamp() AT TIME ZONE 'UTC' AS timestamp)",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
    "mariadb": "SELECT UTC_TIMESTAMP(6)",
}

_lock = threading.Lock()
_anchor: tuple[float, datetime] | None = None  # (monotonic, database's naive UTC) at the last reading
_skew = 0.0
_warned = False
warn: Callable[[str], None] = logging.getLogger("djctl").warning
"""Where the one skew warning goes (a worker points it at its own log)."""


def utc_naive(when: datetime) -> datetime:
    """``when`` as naive UTC, as the database stores it; a naive ``when`` is taken as UTC already."""
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when


def utcnow() -> datetime:
    """The current time as naive UTC, as the database stores it: the database's clock once
    djctl has read it in this process, else the local clock."""
    with _lock:
        anchor = _anchor
    if anchor is None:
        return datetime.now(timezone.utc).replace(tzinfo=None)
    return anchor[1] + timedelta(seconds=time.monotonic() - anchor[0])


def now() -> datetime:
    """The current time, timezone-aware UTC (the database's, as :func:`utcnow`)."""
    return utcnow().replace(tzinfo=timezone.utc)


def skew() -> float:
    """Seconds the database's clock is ahead of the local one at the last reading (0: unread)."""
    return _skew


def query(dialect: str) -> str | None:
    """The SQL that reads ``dialect``'s clock as naive UTC; None for SQLite (the local clock)."""
    return _QUERIES.get(dialect)


def observe(database_now: object, sent: float, received: float) -> None:
    """Take ``database_now`` (read by a query sent at monotonic ``sent``, answered at
    ``received``) as the current time; warn once when it is far from the local clock.
    A reading that is no datetime (a driver's surprise) is ignored."""
    global _anchor, _skew, _warned
    if not isinstance(database_now, datetime):
        return
    database_now = utc_naive(database_now)
    midpoint = (sent + received) / 2
    local = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=time.monotonic() - midpoint)
    with _lock:
        _anchor = (midpoint, database_now)
        _skew = (database_now - local).total_seconds()
        say = abs(_skew) > SKEW_WARNING and not _warned
        _warned = _warned or say
    if say:
        ahead = "behind" if _skew > 0 else "ahead of"
        warn(f"this host's clock is {abs(_skew):.1f}s {ahead} the database's; "
             f"djctl times its decisions by the database's clock")


def sync_dbapi(dbapi_conn: object, dialect: str) -> None:
    """Read the database's clock on a raw DB-API connection (as an engine connects)."""
    sql = query(dialect)
    if sql is None:
        return
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    try:
        sent = time.monotonic()
        cur.execute(sql)
        (value,) = cur.fetchone()
        received = time.monotonic()
    finally:
        cur.close()
        # The reading must not leave a transaction open: on MySQL it would begin before
        # the engine sets the session's isolation level, and keep the older one.
        dbapi_conn.rollback()  # type: ignore[attr-defined]
    observe(value, sent, received)


def reset() -> None:
    """Forget the database's clock (tests; a process that changes databases)."""
    global _anchor, _skew, _warned
    with _lock:
        _anchor, _skew, _warned = None, 0.0, False
