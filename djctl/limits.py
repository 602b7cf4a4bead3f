"""A job's limits: its concurrency key and limit, its unique key, its throttle.

Each may be set on the job's class (``concurrency_key`` — often a property —,
``concurrency_limit``, ``unique_key``, ``unique_while``, ``throttle``) or given to
``enqueue``/``delay``/``handle_asynchronously``/``schedule``; an option given at
enqueue wins over the class's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypedDict

from djctl.queue.gates import concurrency_gate, throttle_gate

KEY_MAX = 200
"""Characters of a key (with its gate's prefix, the column holds 255)."""

UNIQUE_WHILE = ("queued", "running")

Throttle = tuple[str, int, timedelta | float | int]
"""``(key, starts, period)``: at most ``starts`` jobs of ``key`` start per ``period``
(a timedelta, or seconds), across every worker and host."""


class LimitOptions(TypedDict, total=False):
    """The limit options of enqueue, enqueue_many, delay and schedule."""

    concurrency_key: str | None
    concurrency_limit: int | None
    unique_key: str | None
    unique_while: str | None
    throttle: Throttle | None


@dataclass(frozen=True)
class Limits:
    """What limits one job; all None: none (the job is claimed like any other)."""

    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    unique_key: str | None = None
    unique_while: str | None = None
    throttle: Throttle | None = None

    @classmethod
    def of(cls, job: Any, **given: Any) -> Limits:
        """The limits of ``job``: each option in ``given`` that is not None, else the
        job's attribute of that name, if any."""
        values = {}
        for name in ("concurrency_key", "concurrency_limit", "unique_key", "unique_while", "throttle"):
            value = given.get(name)
            if value is None and job is not None:
                value = getattr(job, name, None)
            values[name] = value
        return cls(**values)

    def validated(self) -> Limits:
        """These limits, if they make sense: TypeError or ValueError naming the option."""
        _key("concurrency_key", self.concurrency_key)
        _key("unique_key", self.unique_key)
        if self.concurrency_limit is not None:
            if self.concurrency_key is None:
                raise ValueError("concurrency_limit needs a concurrency_key: the key names what the limit counts")
            _positive("concurrency_limit", self.concurrency_limit)
        if self.unique_while is not None and self.unique_while not in UNIQUE_WHILE:
            raise ValueError(f"unique_while must be 'queued' or 'running', got {self.unique_while!r}")
        if self.unique_while is not None and self.unique_key is None:
            raise ValueError("unique_while needs a unique_key")
        if self.throttle is not None:
            _throttle(self.throttle)
        return self

    def columns(self) -> dict:
        """The row's limit columns (every one, None where unset)."""
        gate = None
        throttle_key = throttle_limit = period_ms = None
        if self.throttle is not None:
            throttle_key, throttle_limit, period = self.throttle
            period_ms = round(_seconds(period) * 1000)
            gate = throttle_gate(throttle_key)
        if self.concurrency_key is not None:
            gate = concurrency_gate(self.concurrency_key)
        return {
            "gate": gate,
            "concurrency_limit": (self.concurrency_limit or 1) if self.concurrency_key is not None else None,
            "throttle_key": throttle_key,
            "throttle_limit": throttle_limit,
            "throttle_period_ms": period_ms,
            "unique_key": self.unique_key,
            "unique_while": (self.unique_while or "queued") if self.unique_key is not None else None,
        }


NONE = Limits()


def _key(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or len(value) > KEY_MAX:
        raise TypeError(f"{name} must be a non-empty string of at most {KEY_MAX} characters, got {value!r}")
    if "\x00" in value:
        raise ValueError(f"{name} must not contain a NUL character, got {value!r}")


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not 1 <= value <= 2**31 - 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def _seconds(period: Any) -> float:
    return period.total_seconds() if isinstance(period, timedelta) else float(period)


def _throttle(value: Any) -> None:
    shape = "throttle must be (key, starts, period), e.g. ('partner-api', 10, timedelta(minutes=1))"
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise TypeError(f"{shape}, got {value!r}")
    key, starts, period = value
    _key("the throttle's key", key)
    _positive("the throttle's starts", starts)
    if isinstance(period, bool) or not isinstance(period, (timedelta, int, float)):
        raise TypeError(f"{shape}; the period must be a timedelta or seconds, got {period!r}")
    if not 0.001 <= _seconds(period) <= 366 * 86400:
        raise ValueError(f"the throttle's period must be between 1 ms and a year, got {period!r}")
