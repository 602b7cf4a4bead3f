"""The console's pure parts: sharing rows, fitting columns, the key bar, log lines, tracebacks."""

from __future__ import annotations

from rich.text import Text

from djctl.tui.keys import ACTIONS, key_bar
from djctl.tui.layout import share
from djctl.tui.logview import render_line
from djctl.tui.table import Column, fit
from djctl.tui.tracebacks import own_frames_first


def test_every_panel_keeps_a_share_of_a_small_screen():
    rows = share(22, wants=[6, 6, 5, 10**6], least=[3, 4, 3, 3])
    assert sum(rows) == 22
    assert rows[:3] == [6, 6, 5] and rows[3] == 5


def test_rows_go_round_robin_when_there_are_not_enough():
    rows = share(16, wants=[9, 9, 9, 10**6], least=[3, 3, 3, 3])
    assert sum(rows) == 16 and rows[3] >= 3 and max(rows[:3]) - min(rows[:3]) <= 1


def test_a_tall_screen_gives_the_rest_to_the_log():
    assert share(48, wants=[7, 7, 10, 10**6], least=[3, 4, 3, 3]) == [7, 7, 10, 24]


def test_columns_collapse_by_priority_and_keep_their_order():
    cols = [Column("id"), Column("job"), Column("queue", 4), Column("failed", 3), Column("error", 2, stretch=True)]
    rows = [("1077", "ImportCsv", "default", "1m 00s ago", "FileNotFoundError: no such file: /tmp/import-7.csv")]
    wide = fit(cols, rows, 200)
    assert [i for i, _ in wide] == [0, 1, 2, 3, 4] and dict(wide)[4] == len(rows[0][4])
    narrow = fit(cols, rows, 50)
    assert [i for i, _ in narrow] == [0, 1, 3, 4]  # queue (priority 4) left out
    assert sum(w + 2 for _, w in narrow) <= 50


def test_a_column_is_as_wide_as_what_it_holds_now():
    cols = [Column("process"), Column("job")]
    assert dict(fit(cols, [("worker.1", "a-very-long-job-name (id=1)")], 100))[1] == 27
    assert dict(fit(cols, [("worker.1", "")], 100))[1] == 3


def test_the_key_bar_keeps_quit_and_help_at_80_columns_and_says_there_is_more():
    bar = key_bar(ACTIONS, 80).plain
    assert len(bar) <= 80
    for key in ("q Quit", "? Help", "/ Filter", "l Log", "r Retry", "d Delete"):
        assert key in bar
    assert bar.rstrip().endswith("…")
    assert "…" not in key_bar(ACTIONS, 200).plain


def test_log_lines_drop_what_repeats():
    line = ("2026-11-22T10:04:05.123456+00:00 app[worker.1]: [Worker(host:railgun pid:25794)] "
            "Job ImportCsv (id=7) FAILED (2 prior attempts) with FileNotFoundError: no such file")
    shown = render_line(line)
    assert isinstance(shown, Text)
    assert shown.plain == ("10:04:05 worker.1 Job ImportCsv (id=7) FAILED (2 prior attempts) with "
                           "FileNotFoundError: no such file")
    assert render_line("not a log line").plain == "not a log line"


def test_the_jobs_own_frames_come_first():
    tb = "\n".join([
        "RuntimeError: boom",
        "Traceback (most recent call last):",
        '  File "/srv/venv/lib/python3.11/site-packages/djctl/worker/executor.py", line 88, in _outcome',
        "    job.perform()",
        '  File "/srv/app/shop/imports.py", line 12, in perform',
        "    raise RuntimeError('boom')",
        "RuntimeError: boom",
    ])
    lines = own_frames_first(tb).splitlines()
    assert lines[0] == "RuntimeError: boom"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[2].startswith('  File "/srv/app/shop/imports.py"')
    assert lines[4] == "(djctl and library frames)"
    assert lines[-1] == "RuntimeError: boom"
    assert own_frames_first("no traceback here") == "no traceback here"
