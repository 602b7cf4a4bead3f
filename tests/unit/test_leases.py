"""Issue 14: lease settings checked against each other, and the one clock that follows the
database's."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from djctl import clock
from djctl.config import ConfigError, load_settings


@pytest.mark.parametrize(("env", "words"), [
    ({"DJ_HEARTBEAT_TIMEOUT": "0"}, "heartbeat_timeout must be more than 0 seconds (got 0)"),
    ({"DJ_HEARTBEAT_INTERVAL": "0"}, "heartbeat_interval must be more than 0 seconds (got 0)"),
    ({"DJ_HEARTBEAT_INTERVAL": "10", "DJ_HEARTBEAT_TIMEOUT": "5"},
     "heartbeat_interval (10s) must be under half of heartbeat_timeout (5s)"),
    ({"DJ_HEARTBEAT_INTERVAL": "3", "DJ_HEARTBEAT_TIMEOUT": "6"},
     "heartbeat_interval (3s) must be under half of heartbeat_timeout (6s)"),
])
def test_lease_settings_that_would_take_live_claims_are_refused_in_one_line(tmp_path, env, words):
    with pytest.raises(ConfigError) as e:
        load_settings({}, env, tmp_path)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_lease_settings_that_leave_room_for_two_renewals_are_accepted(tmp_path):
    s = load_settings({}, {"DJ_HEARTBEAT_INTERVAL": "0.5", "DJ_HEARTBEAT_TIMEOUT": "3"}, tmp_path)
    assert (s.heartbeat_interval, s.heartbeat_timeout) == (0.5, 3.0)


@pytest.fixture
def fresh_clock():
    clock.reset()
    yield
    clock.reset()


def test_now_follows_the_database_clock_once_read_and_warns_once(fresh_clock):
    said: list[str] = []
    clock.warn, before = said.append, clock.warn
    try:
        local = datetime.now(timezone.utc).replace(tzinfo=None)
        t = time.monotonic()
        clock.observe(local - timedelta(minutes=5), t, t)
        assert -301 < clock.skew() < -299
        assert abs((clock.utcnow() - (local - timedelta(minutes=5))).total_seconds()) < 60
        assert clock.now().tzinfo is timezone.utc
        clock.observe(local - timedelta(minutes=5), t, t)
    finally:
        clock.warn = before
    assert len(said) == 1 and "this host's clock is 300.0s ahead of the database's" in said[0]


def test_a_small_skew_is_not_reported(fresh_clock):
    said: list[str] = []
    clock.warn, before = said.append, clock.warn
    try:
        t = time.monotonic()
        clock.observe(datetime.now(timezone.utc) + timedelta(seconds=0.5), t, t)
    finally:
        clock.warn = before
    assert said == [] and abs(clock.skew()) < 1.5
