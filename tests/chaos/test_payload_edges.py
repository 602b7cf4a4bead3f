"""Issue 14, point 12 and acceptance 10: each payload and option edge either round-trips
exactly through a real worker or is refused at enqueue with a TypeError/ValueError naming
the argument and the limit — on every database, with nothing written when refused."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import djctl
from djctl.payload import MAX_DEPTH
from tests.support.rows import count

MIB = 1 << 20


@djctl.job
def write_json(path: str, value: object) -> None:
    """Writes ``value`` (JSON, or its repr) to ``path``: the test compares it to what it enqueued."""
    Path(path).write_text(repr(value))


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def run_all(engine) -> tuple[int, int]:
    return djctl.Worker(settings=djctl.config.current()).work_off(10)


def roundtrip(engine, tmp_path: Path, value: object) -> str:
    out = tmp_path / "value.txt"
    djctl.delay(write_json)(str(out), value)
    assert run_all(engine) == (1, 0)
    return out.read_text()


def refused(engine, exc: type[Exception], *words: str, **opts) -> str:
    """Enqueue with ``opts`` (a ``value`` becomes the job's argument); the error's text."""
    value = opts.pop("value", 1)
    with pytest.raises(exc) as info:
        djctl.delay(write_json, **opts)("/nonexistent", value)
    text = str(info.value)
    for word in words:
        assert word in text, text
    assert count(engine.url.render_as_string(hide_password=False)) == 0
    return text


def test_a_10000_deep_list_is_refused_naming_the_argument_and_the_limit(engine):
    refused(engine, ValueError, "argument[1]", f"more than {MAX_DEPTH} levels", value=nested(10_000))


def test_a_cycle_is_refused_as_too_deep(engine):
    loop: list = []
    loop.append(loop)
    refused(engine, ValueError, f"more than {MAX_DEPTH} levels", value=loop)


def test_the_deepest_accepted_argument_runs_in_the_worker(engine, tmp_path):
    # The argument list is one level; the deepest argument fills the rest, with tuples
    # (two JSON levels each) so the worker's decoder meets the worst case.
    value: object = ()
    for _ in range(MAX_DEPTH - 2):
        value = (value,)
    assert roundtrip(engine, tmp_path, value) == repr(value)
    refused(engine, ValueError, f"more than {MAX_DEPTH} levels", value=(value,))


@pytest.mark.parametrize("priority", [2**31, -(2**31) - 1, 2**63])
def test_priority_outside_32_bits_is_refused(engine, priority):
    refused(engine, ValueError, "priority", "32-bit", "2147483647", str(priority), priority=priority)


@pytest.mark.parametrize("priority", [2**31 - 1, -(2**31)])
def test_priority_at_the_32_bit_limits_is_stored(engine, priority):
    job_id = djctl.delay(write_json, priority=priority)("/nonexistent", 1)
    assert djctl.api.engine().connect().exec_driver_sql(
        f"SELECT priority FROM delayed_jobs WHERE id = {job_id}").scalar() == priority


def test_a_queue_with_a_nul_byte_is_refused(engine):
    refused(engine, ValueError, "queue", "NUL", queue="mail\x00box")


def test_run_at_that_overflows_in_utc_is_refused(engine):
    minus5 = timezone(timedelta(hours=-5))
    refused(engine, ValueError, "run_at", "9999-12-31T23:00:00-05:00", "out of range",
            run_at=datetime(9999, 12, 31, 23, 0, tzinfo=minus5))


def test_run_at_in_year_9999_utc_is_stored(engine):
    when = datetime(9999, 12, 31, 12, 0, tzinfo=timezone.utc)
    job_id = djctl.delay(write_json, run_at=when)("/nonexistent", 1)
    stored = djctl.api.engine().connect().exec_driver_sql(
        f"SELECT run_at FROM delayed_jobs WHERE id = {job_id}").scalar()
    stored = datetime.fromisoformat(stored) if isinstance(stored, str) else stored
    assert stored.replace(tzinfo=None) == datetime(9999, 12, 31, 12, 0)


@pytest.mark.parametrize("value", [
    "nul \x00 inside", "lone \ud800 surrogate", 10**400, {"deep": nested(50)},
], ids=["nul", "surrogate", "bigint", "nested50"])
def test_what_held_still_round_trips_exactly(engine, tmp_path, value):
    assert roundtrip(engine, tmp_path, value) == repr(value)


def test_nan_is_refused(engine):
    refused(engine, TypeError, "argument[1]", "not a finite number", value=float("nan"))


def test_a_50_mib_argument_round_trips_or_is_refused_with_its_size(engine, db_kind, tmp_path):
    value = "x" * (50 * MIB)
    if db_kind != "mysql":
        assert roundtrip(engine, tmp_path, value) == repr(value)
        return
    limit = djctl.api.engine().connect().exec_driver_sql("SELECT @@max_allowed_packet").scalar()
    if limit > 60 * MIB:
        pytest.skip(f"this server's max_allowed_packet ({limit}) takes 50 MiB")
    text = refused(engine, ValueError, "50.0 MiB", "max_allowed_packet", f"{limit / MIB:.1f} MiB", value=value)
    assert "\n" not in text


def test_a_job_just_under_the_packet_limit_is_stored_on_mariadb(engine, db_kind, tmp_path):
    if db_kind != "mysql":
        pytest.skip("MariaDB's max_allowed_packet")
    limit = djctl.api.engine().connect().exec_driver_sql("SELECT @@max_allowed_packet").scalar()
    value = "y" * (min(limit, 64 * MIB) - 64 * 1024)
    assert json.loads(roundtrip(engine, tmp_path, value).replace("'", '"')) == value
