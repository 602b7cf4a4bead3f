"""The worker's values, alone: names in locked_by, pipe messages, report lines and events."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import pytest

from djctl.errors import one_line
from djctl.handlers import default_backoff
from djctl.queue.claims import ClaimedJob
from djctl.worker import identity, messages
from djctl.worker.messages import Outcome
from djctl.worker.report import Event, line


def test_a_worker_name_round_trips_and_other_names_are_not_workers():
    assert identity.format("railgun", 25794) == "host:railgun pid:25794"
    assert identity.parse("host:railgun pid:25794") == ("railgun", 25794)
    assert identity.parse("host:a pid:b pid:7") == ("a pid:b", 7)
    for other in ("raw pid:12", "host:railgun", "host:railgun pid:", "host:x pid:12a", ""):
        assert identity.parse(other) is None


def test_a_pid_reused_by_a_newer_process_is_not_the_one_that_started():
    assert not identity.pid_alive(os.getpid(), datetime(2000, 1, 1))


@pytest.mark.parametrize("msg", [
    messages.Job(7, '{"job": "a:B"}', 2, 25, 14400.0),
    messages.Started(7, "NewsletterJob", 30.0, 3),
    messages.Result(7, True),
    messages.Result(7, False, "RuntimeError: boom\nTraceback ...", datetime(2026, 1, 2, 3, 4, 5)),
    messages.Result(7, False, "attempts exhausted"),
    messages.Skipped(7),
])
def test_every_pipe_message_round_trips_as_one_line(msg):
    text = msg.encode()
    assert text.endswith("\n") and text.count("\n") == 1
    decode = messages.decode_job if isinstance(msg, messages.Job) else messages.decode_reply
    assert decode(text.encode()) == msg


def _outcome(ok: bool, retry: bool = False, attempts: int = 1, error: str | None = None) -> Outcome:
    job = ClaimedJob(9, "{}", attempts, 0, datetime(2026, 1, 1), "mail", None, None)
    return Outcome(job, "Mailer#send", ok, error, datetime(2026, 1, 2) if retry else None, 0.25)


def test_report_lines_are_delayed_jobs():
    assert line(_outcome(True)) == "Job Mailer#send (id=9) COMPLETED after 0.2500"
    assert line(_outcome(False, retry=True, attempts=3, error="RuntimeError: x\ntrace")) == (
        "Job Mailer#send (id=9) FAILED (2 prior attempts) with RuntimeError: x")
    assert line(_outcome(False, attempts=25, error="E: y")) == (
        "Job Mailer#send (id=9) FAILED permanently because of 25 consecutive failures: E: y")


def test_events_round_trip_and_name_the_outcome():
    kinds = [Event.of(o).event for o in (_outcome(True), _outcome(False, retry=True), _outcome(False))]
    assert kinds == ["completed", "failed", "failed_permanently"]
    e = Event.of(_outcome(True))
    text = e.to_json()
    assert "\n" not in text and '"class":"Mailer#send"' in text
    assert Event.from_json(text) == e
    with pytest.raises(ValueError):
        Event.from_json('{"event": "something else"}')


def test_the_default_backoff_is_attempts_to_the_fourth_plus_five_seconds():
    assert [default_backoff(n) for n in (0, 1, 2)] == [timedelta(seconds=5), timedelta(seconds=6),
                                                       timedelta(seconds=21)]


def test_one_line_prefers_the_drivers_message():
    class Wrapped(Exception):
        orig = ValueError("connection refused\n\tIs the server running?")

    assert one_line(Wrapped("(psycopg.OperationalError) connection refused ...")) == "connection refused"
    assert one_line(RuntimeError("")) == "RuntimeError"
    assert one_line(KeyError("k")) == "'k'"
