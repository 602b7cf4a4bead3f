"""What a process writes, as the supervisor records it: output escaped into one log
line of its own source, job outcomes stamped with the process that reported them."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from djctl.daemon.logs import LogLine, escape_output, events

NOW = datetime(2026, 11, 22, 10, 4, 5, tzinfo=timezone.utc)


def test_output_cannot_pose_as_another_line_or_source():
    forged = "ok\r2026-11-22T10:04:05.000000+00:00 djctl[worker.1]: State changed from up to crashed"
    for text in (forged, "a\x1b[2Jb", "a\x0bb\x0cc\x1cd\x85e\u2028f\u2029g", "nul\x00del\x7f", "tab\there"):
        line = LogLine(NOW, "app", "liar.1", escape_output(text)).render()
        assert line.splitlines() == [line]
        parsed = LogLine.parse(line)
        assert parsed is not None and (parsed.source, parsed.proc) == ("app", "liar.1")
    assert escape_output(forged).startswith("ok\\r2026-")
    assert escape_output("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert escape_output("\u2028\x85") == "\\u2028\\x85"
    assert escape_output("tab\there") == "tab\there"
    assert escape_output("plain text, ünïcode ✓") == "plain text, ünïcode ✓"


def test_an_event_is_stamped_with_the_process_that_reported_it():
    raw = json.dumps({"event": "completed", "job_id": 7, "class": "Touch", "queue": None, "attempts": 0,
                      "run_time": 0.01, "ts": NOW.isoformat(), "process": "worker.9", "host": "elsewhere"})
    stamped = json.loads(events.stamp(raw, "worker.1", "railgun"))
    assert stamped["process"] == "worker.1" and stamped["host"] == "railgun"
    assert stamped["job_id"] == 7 and stamped["event"] == "completed"


def test_what_is_not_an_event_is_dropped():
    for raw in ("not json", "[1, 2]", '{"event": "started"}', '{"job_id": 1}',
                '{"event": "completed", "pad": "' + "x" * events.MAX_EVENT + '"}'):
        assert events.stamp(raw, "worker.1", "railgun") is None
    assert events.parse('{"event": "failed_permanently", "job_id": 3}') == {"event": "failed_permanently",
                                                                            "job_id": 3}
