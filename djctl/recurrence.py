"""When a recurring job runs next: every N seconds, or on a cron expression in a time zone.

A recurring job is one ``delayed_jobs`` row. ``reoccur_in`` holds ``every`` in whole
seconds; ``cron`` holds the expression followed by its time zone, as fugit (the Ruby
schedulers' parser) writes it: ``"30 2 * * * Europe/Berlin"``. Keeping the zone in the
same column needs no schema change and keeps the zone atomic with its expression;
a bare five-field expression (written by hand) is read as UTC.

Cron times are wall-clock times in the schedule's zone, so daylight saving needs a rule,
and djctl follows cron's (ISC/Vixie cron, cronie):

- A time the clocks skip (02:30 on a spring-forward night) fires once, at the jump
  (03:00 local), rather than not at all that day.
- A time that occurs twice (02:30 on a fall-back night) fires once, at its first
  occurrence, for a fixed-time expression. An expression whose minute or hour field is a
  wildcard (``*/15 * * * *``, ``0 * * * *``) is about elapsed time rather than a time of
  day: it fires in both passes of the repeated hour, as the real clock advances.

All datetimes here are naive UTC (as the database stores them) unless stated otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

from djctl.queue.claims import ClaimedJob

UTC = timezone.utc
MAX_EVERY = timedelta(seconds=2**31 - 1)
"""``reoccur_in`` is a 32-bit integer column."""
FALLBACK = timedelta(hours=1)
"""How long a worker waits before retrying a row whose schedule cannot be read."""

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# A zone's offset changes by at most a few hours; looking back this far in wall-clock
# time finds every cron time whose instant, in a repeated hour, is still to come.
_LOOKBACK = timedelta(hours=3)
_MAX_STEPS = 100_000


@dataclass(frozen=True)
class Recurrence:
    """How often a job recurs: ``every`` (whole seconds), or ``cron`` in the IANA zone ``tz``."""

    every: timedelta | None = None
    cron: str | None = None
    tz: str = "UTC"

    @classmethod
    def of(cls, every: timedelta | None = None, cron: str | None = None, tz: str = "UTC") -> Recurrence:
        """A checked recurrence; ValueError (one line, saying what to do) for anything unusable."""
        if (every is None) == (cron is None):
            raise ValueError("give exactly one of every= (a timedelta) or cron= (a cron expression)")
        if every is not None:
            if not isinstance(every, timedelta):
                raise ValueError(f"every must be a timedelta, e.g. timedelta(hours=1); got {every!r}")
            if every <= timedelta(0):
                raise ValueError(f"every must be positive; got {every}")
            if every % timedelta(seconds=1) or every > MAX_EVERY:
                raise ValueError(f"every must be a whole number of seconds, at most {MAX_EVERY}; got {every}")
            if tz != "UTC":
                raise ValueError("tz= applies to cron schedules only; every= counts elapsed time")
            return cls(every=every)
        if not isinstance(cron, str):
            raise ValueError(f"cron must be a string such as '0 3 * * *'; got {cron!r}")
        expr = " ".join(cron.split())
        _check_zone(tz)
        _check_cron(expr)
        made = cls(cron=expr, tz=tz)
        if len(made.cron_column()) > 255:
            raise ValueError("cron expression and time zone must fit in 255 characters")
        try:
            made.next_run(None, datetime(2000, 1, 1))
        except CroniterError:
            raise ValueError(f"cron expression {expr!r} never fires") from None
        return made

    @classmethod
    def from_row(cls, reoccur_in: int | None, cron: str | None) -> Recurrence:
        """The recurrence a row's columns describe; ValueError if they describe none."""
        if cron is not None:
            tokens = cron.split()
            tz = "UTC"
            if (tokens[:1] and tokens[0].startswith("@") and len(tokens) == 2) or len(tokens) == 6:
                tz = tokens.pop()
            expr = " ".join(tokens)
            _check_zone(tz)
            _check_cron(expr)
            return cls(cron=expr, tz=tz)
        if reoccur_in is None or reoccur_in <= 0:
            raise ValueError(f"reoccur_in must be a positive number of seconds; found {reoccur_in!r}")
        return cls(every=timedelta(seconds=reoccur_in))

    def columns(self) -> dict:
        """The ``reoccur_in`` and ``cron`` column values for this recurrence."""
        if self.every is not None:
            return {"reoccur_in": int(self.every.total_seconds()), "cron": None}
        return {"reoccur_in": None, "cron": self.cron_column()}

    def cron_column(self) -> str:
        return f"{self.cron} {self.tz}"

    def describe(self) -> str:
        """``every 1h30m`` or ``cron 30 2 * * * Europe/Berlin``, as ``djctl schedules`` shows it."""
        if self.every is not None:
            return f"every {format_every(self.every)}"
        return f"cron {self.cron_column()}"

    def first_run(self, now: datetime) -> datetime:
        """When a new (or changed) schedule first runs: at once for ``every``, else the next cron time."""
        if self.every is not None:
            return now
        return self.next_run(None, now)

    def next_run(self, anchor: datetime | None, now: datetime) -> datetime:
        """The first instant of the next period strictly after ``now``.

        ``every`` periods are counted from ``anchor`` (the run_at of the run that just
        ended), so runs do not drift by however late each one started, and periods
        missed while nothing ran are skipped, not made up.
        """
        if self.every is not None:
            base = anchor if anchor is not None else now
            periods = max(1, (now - base) // self.every + 1)
            return base + periods * self.every
        assert self.cron is not None
        return _next_cron(self.cron, ZoneInfo(self.tz), now)


def next_run(job: ClaimedJob, now: datetime) -> datetime:
    """The first instant of the job's next period after ``now`` (naive UTC); never raises.

    A period missed while nothing ran is not made up: the next run is in the future.
    A row whose schedule cannot be read (edited by hand into nonsense) is retried after
    FALLBACK rather than taking its worker down; ``djctl schedules`` shows it as invalid.
    """
    try:
        return Recurrence.from_row(job.reoccur_in, job.cron).next_run(job.run_at, now)
    except (ValueError, OverflowError, CroniterError):
        return now + FALLBACK


def format_every(every: timedelta) -> str:
    """``1d``, ``3h``, ``1h30m``, ``45s``: the largest units first, zero units left out."""
    seconds = int(every.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def _check_zone(tz: object) -> None:
    if not isinstance(tz, str) or not tz:
        raise ValueError(f"tz must be an IANA time zone name such as 'Europe/Berlin'; got {tz!r}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'") from None


def _check_cron(expr: str) -> None:
    fields = _ALIASES.get(expr, expr).split()
    if len(fields) != 5:
        raise ValueError(
            f"cron expression {expr!r} must have 5 fields (minute hour day-of-month month day-of-week) "
            f"or be one of {', '.join(_ALIASES)}"
        )
    try:
        croniter(expr, datetime(2000, 1, 1))
    except CroniterError as e:
        raise ValueError(f"invalid cron expression {expr!r}: {e}") from None


def _is_wildcard(expr: str) -> bool:
    """cron's rule: a wildcard minute or hour field makes a job about elapsed time, not a time of day."""
    minute, hour = _ALIASES.get(expr, expr).split()[:2]
    return minute.startswith("*") or hour.startswith("*")


def _next_cron(expr: str, zone: ZoneInfo, now: datetime) -> datetime:
    """The first instant after ``now`` at which ``expr``, read as wall-clock time in ``zone``, fires.

    croniter walks wall-clock times (naive); each is mapped to its instants here, so the
    daylight-saving rules in the module docstring are djctl's own, not the parser's.
    """
    fixed = not _is_wildcard(expr)
    at = now.replace(tzinfo=UTC)
    wall = at.astimezone(zone).replace(tzinfo=None)
    if len({(at + k * _LOOKBACK).astimezone(zone).utcoffset() for k in (-1, 0, 1)}) > 1:
        wall -= _LOOKBACK
    times = croniter(expr, wall)
    best: datetime | None = None
    for _ in range(_MAX_STEPS):
        instants = _instants(times.get_next(datetime), zone, fixed)
        if best is not None and instants[0] >= best:
            break
        for instant in instants:
            if instant > at and (best is None or instant < best):
                best = instant
    if best is None:
        raise ValueError(f"cron expression {expr!r} does not fire after {now:%Y-%m-%d %H:%M}")
    return best.replace(tzinfo=None)


def _instants(wall: datetime, zone: ZoneInfo, fixed: bool) -> list[datetime]:
    """The aware UTC instants, earliest first, at which the wall-clock time ``wall`` fires in ``zone``."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        # The wall time occurs twice (clocks went back): first < second.
        return [first] if fixed else [first, second]
    # The clocks skip this wall time: fire once, at the jump.
    return [_jump(second, first, wall, zone)]


def _jump(low: datetime, high: datetime, wall: datetime, zone: ZoneInfo) -> datetime:
    """The earliest instant in (low, high] whose wall-clock time in ``zone`` is at or after ``wall``."""
    while high - low > timedelta(microseconds=1):
        mid = low + (high - low) // 2
        if mid.astimezone(zone).replace(tzinfo=None) >= wall:
            high = mid
        else:
            low = mid
    return high
