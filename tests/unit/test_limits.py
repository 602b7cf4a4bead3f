"""A job's limits as values: what enqueue stores for them, and what it refuses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from djctl.limits import Limits
from djctl.queue.gates import describe
from djctl.queue.inserts import LIMIT_COLUMNS, limited


@dataclass
class Sync:
    account: int
    concurrency_limit = 2

    @property
    def concurrency_key(self) -> str:
        return f"account:{self.account}"


def test_the_class_gives_the_limits_and_an_option_wins():
    assert Limits.of(Sync(4)).columns()["gate"] == "concurrency:account:4"
    assert Limits.of(Sync(4)).columns()["concurrency_limit"] == 2
    assert Limits.of(Sync(4), concurrency_key="other").columns()["gate"] == "concurrency:other"


def test_columns_of_each_limit():
    assert Limits().columns() == dict.fromkeys(LIMIT_COLUMNS)
    assert not limited(Limits().columns())
    throttled = Limits(throttle=("api", 10, timedelta(minutes=1))).columns()
    assert (throttled["gate"], throttled["throttle_key"], throttled["throttle_limit"],
            throttled["throttle_period_ms"]) == ("throttle:api", "api", 10, 60_000)
    both = Limits(concurrency_key="k", throttle=("api", 1, 0.5)).columns()
    assert (both["gate"], both["concurrency_limit"], both["throttle_period_ms"]) == ("concurrency:k", 1, 500)
    unique = Limits(unique_key="u").columns()
    assert (unique["unique_key"], unique["unique_while"], unique["gate"]) == ("u", "queued", None)
    assert limited(unique)


@pytest.mark.parametrize(("limits", "error", "words"), [
    (Limits(concurrency_limit=1), ValueError, "needs a concurrency_key"),
    (Limits(concurrency_key="k", concurrency_limit=True), TypeError, "must be an integer"),
    (Limits(concurrency_key="x" * 201), TypeError, "at most 200"),
    (Limits(unique_key="a\x00b"), ValueError, "NUL"),
    (Limits(unique_while="running"), ValueError, "needs a unique_key"),
    (Limits(throttle=("api", 0, 1)), ValueError, "at least 1"),
    (Limits(throttle=("api", 1, "1m")), TypeError, "timedelta or seconds"),
    (Limits(throttle="api"), TypeError, "(key, starts, period)"),
])
def test_bad_limits_are_named(limits, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        limits.validated()


def test_what_a_waiting_job_waits_for():
    assert describe("concurrency:account:42") == "a slot of account:42"
    assert describe("throttle:partner") == "the throttle partner"
    assert describe(None) is None
