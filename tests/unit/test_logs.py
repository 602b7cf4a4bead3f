"""The supervisor's log in one process: format, filters, writer, rotation, tail and follow."""

from __future__ import annotations

import stat
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from djctl.daemon.logs import LogFilter, LogLine, LogWriter, follow, tail
from tests.support.logs import T0, consume_until, files_oldest_first, messages, take, ticking_clock


def all_lines(path: Path) -> list[str]:
    return [line for f in files_oldest_first(path) for line in f.read_text().splitlines()]


# --- the line format -------------------------------------------------------------------


def test_render_matches_heroku_format():
    line = LogLine(T0, "app", "worker.1", "*** Starting job worker host:railgun pid:25794")
    assert line.render() == (
        "2026-11-22T10:04:05.123456+00:00 app[worker.1]: *** Starting job worker host:railgun pid:25794"
    )
    event = LogLine(T0.replace(microsecond=200000), "djctl", "worker.1", "State changed from starting to up")
    assert event.render() == (
        "2026-11-22T10:04:05.200000+00:00 djctl[worker.1]: State changed from starting to up"
    )


def test_render_converts_to_utc():
    plus_two = timezone(timedelta(hours=2))
    line = LogLine(datetime(2026, 11, 22, 12, 4, 5, tzinfo=plus_two), "app", "worker.1", "hi")
    assert line.render().startswith("2026-11-22T10:04:05.000000+00:00 ")


@given(
    at=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.builds(timezone, st.timedeltas(timedelta(hours=-23), timedelta(hours=23))),
    ),
    source=st.sampled_from(["app", "djctl"]),
    proc=st.from_regex(r"[A-Za-z0-9_-]{1,12}(\.[0-9]{1,3})?", fullmatch=True),
    message=st.text().filter(lambda m: "\n" not in m and not m.endswith("\r")),
)
def test_parse_gives_back_what_render_wrote(at, source, proc, message):
    line = LogLine(at, source, proc, message)
    parsed = LogLine.parse(line.render())
    assert parsed == line
    assert parsed.at.utcoffset() == timedelta(0)
    assert LogLine.parse(line.render() + "\n") == line


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "2026-11-22T10:04:05.123456+00:00 app worker.1: no brackets",
        "2026-13-45T10:04:05.123456+00:00 app[worker.1]: impossible date",
        "2026-11-22T10:04:05.123456+00:00 app[worker.1] missing colon",
        "2026-11-22T10:04:05.123456+00:00 app[worker.1]: two\nlines",
    ],
)
def test_parse_rejects_what_is_not_a_log_line(text):
    assert LogLine.parse(text) is None


def test_line_values_are_checked():
    with pytest.raises(ValueError, match="timezone-aware"):
        LogLine(datetime(2026, 1, 1), "app", "worker.1", "x")
    with pytest.raises(ValueError, match="one line"):
        LogLine(T0, "app", "worker.1", "a\nb")
    with pytest.raises(ValueError, match="process name"):
        LogLine(T0, "app", "worker 1", "x")


# --- filters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "procs_and_sources"),
    [
        (LogFilter(), {("worker.1", "app"), ("worker.2", "app"), ("workers.1", "app"),
                       ("mail.1", "djctl"), ("djctl", "djctl"), ("worker.1", "djctl")}),
        (LogFilter(proc="worker"), {("worker.1", "app"), ("worker.2", "app"), ("worker.1", "djctl")}),
        (LogFilter(proc="worker.1"), {("worker.1", "app"), ("worker.1", "djctl")}),
        (LogFilter(proc="djctl"), {("djctl", "djctl")}),
        (LogFilter(source="djctl"), {("mail.1", "djctl"), ("djctl", "djctl"), ("worker.1", "djctl")}),
        (LogFilter(proc="worker", source="app"), {("worker.1", "app"), ("worker.2", "app")}),
    ],
)
def test_filter_by_type_process_and_source(flt, procs_and_sources):
    every = [("worker.1", "app"), ("worker.2", "app"), ("workers.1", "app"),
             ("mail.1", "djctl"), ("djctl", "djctl"), ("worker.1", "djctl")]
    kept = {(proc, source) for proc, source in every if flt.matches(LogLine(T0, source, proc, "m"))}
    assert kept == procs_and_sources


@pytest.mark.parametrize("kwargs", [{"proc": "worker.x"}, {"proc": "worker 1"}, {"source": "router"}])
def test_filter_rejects_bad_values_in_one_line(kwargs):
    with pytest.raises(ValueError) as e:
        LogFilter(**kwargs)
    assert "\n" not in str(e.value)


# --- the writer ------------------------------------------------------------------------


def test_writer_creates_owner_only_file_and_directories(tmp_path):
    path = tmp_path / "state" / "log" / "djctl.log"
    with LogWriter(path, max_bytes=200, backups=2) as w:
        for i in range(20):
            w.write("app", "worker.1", f"line {i}")
    for f in files_oldest_first(path):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "state" / "log").stat().st_mode) == 0o700


def test_writer_splits_messages_on_newlines_and_stamps_them_alike(tmp_path):
    path = tmp_path / "log"
    with LogWriter(path, clock=lambda: T0) as w:
        w.write("app", "worker.1", "Traceback:\r\n  boom\r\n\r\n")
        w.write("djctl", "djctl", "Stopping all processes with SIGTERM")
    assert path.read_text() == (
        "2026-11-22T10:04:05.123456+00:00 app[worker.1]: Traceback:\n"
        "2026-11-22T10:04:05.123456+00:00 app[worker.1]:   boom\n"
        "2026-11-22T10:04:05.123456+00:00 djctl[djctl]: Stopping all processes with SIGTERM\n"
    )


def test_writer_appends_to_an_existing_log(tmp_path):
    path = tmp_path / "log"
    with LogWriter(path, clock=lambda: T0) as w:
        w.write("app", "worker.1", "one")
    with LogWriter(path, clock=lambda: T0) as w:
        w.write("app", "worker.1", "two")
    assert messages(all_lines(path)) == ["one", "two"]


def test_writer_refuses_bad_names_and_use_after_close(tmp_path):
    w = LogWriter(tmp_path / "log")
    with pytest.raises(ValueError):
        w.write("app", "worker 1", "x")
    w.close()
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write("app", "worker.1", "x")


def test_writer_reopens_a_log_deleted_under_it(tmp_path):
    path = tmp_path / "log"
    with LogWriter(path) as w:
        w.write("app", "worker.1", "before")
        path.unlink()
        w.write("app", "worker.1", "after")
    assert messages(all_lines(path)) == ["after"]


def test_rotation_keeps_backups_and_every_file_under_max_bytes(tmp_path):
    path = tmp_path / "log"
    with LogWriter(path, max_bytes=500, backups=3, clock=ticking_clock()) as w:
        for i in range(200):
            w.write("app", "worker.1", f"line {i}")
    files = files_oldest_first(path)
    assert [f.name for f in files] == ["log.3", "log.2", "log.1", "log"]
    assert all(f.stat().st_size <= 500 for f in files)
    kept = [int(m.split()[1]) for m in messages(all_lines(path))]
    assert kept == list(range(kept[0], 200))


def test_threads_writing_at_once_produce_intact_lines(tmp_path):
    path = tmp_path / "log"
    threads_n, lines_n = 8, 500
    with LogWriter(path, max_bytes=20_000, backups=1000, clock=ticking_clock()) as w:

        def write(t: int) -> None:
            for i in range(lines_n):
                w.write("app", f"worker.{t}", f"thread {t} line {i} " + "x" * (i % 50))

        threads = [threading.Thread(target=write, args=(t,)) for t in range(1, threads_n + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lines = all_lines(path)
    parsed = [LogLine.parse(line) for line in lines]
    assert None not in parsed
    assert len(parsed) == threads_n * lines_n
    for t in range(1, threads_n + 1):
        mine = [int(p.message.split()[3]) for p in parsed if p.proc == f"worker.{t}"]
        assert mine == list(range(lines_n))
    stamps = [p.at for p in parsed]
    assert stamps == sorted(stamps)


# --- tail ------------------------------------------------------------------------------


def write_numbered(path: Path, count: int, max_bytes: int, backups: int, width: int = 60) -> None:
    with LogWriter(path, max_bytes=max_bytes, backups=backups, clock=ticking_clock()) as w:
        for i in range(count):
            w.write("app", f"worker.{i % 3 + 1}", f"n={i} ".ljust(width, "."))


def numbers(lines: list[str]) -> list[int]:
    return [int(m.split()[0][2:]) for m in messages(lines)]


def test_tail_reads_across_rotated_files(tmp_path):
    path = tmp_path / "log"
    # ~130 KB per file: each spans several read blocks, and lines straddle block edges.
    write_numbered(path, 12_000, max_bytes=130_000, backups=20)
    assert len(files_oldest_first(path)) > 5
    assert numbers(tail(path, 10, LogFilter())) == list(range(11_990, 12_000))
    assert numbers(tail(path, 5_000, LogFilter())) == list(range(7_000, 12_000))
    assert numbers(tail(path, 100_000, LogFilter())) == list(range(12_000))
    assert tail(path, 0, LogFilter()) == []


def test_tail_filters_before_counting(tmp_path):
    path = tmp_path / "log"
    write_numbered(path, 3_000, max_bytes=20_000, backups=50)
    assert numbers(tail(path, 4, LogFilter(proc="worker.2"))) == [2989, 2992, 2995, 2998]
    assert tail(path, 4, LogFilter(source="djctl")) == []


def test_tail_leaves_out_an_unfinished_last_line(tmp_path):
    path = tmp_path / "log"
    with LogWriter(path, clock=lambda: T0) as w:
        w.write("app", "worker.1", "done")
    with open(path, "ab") as f:
        f.write(b"2026-11-22T10:04:05.123456+00:00 app[worker.1]: half wri")
    assert messages(tail(path, 5, LogFilter())) == ["done"]


def test_no_log_yet_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no log yet at .*missing.log"):
        tail(tmp_path / "missing.log", 10, LogFilter())
    with pytest.raises(FileNotFoundError, match="no log yet"):
        follow(tmp_path / "missing.log", LogFilter())


# --- follow ----------------------------------------------------------------------------


def test_follow_prints_last_n_then_new_lines_that_match(tmp_path, stop):
    path = tmp_path / "log"
    with LogWriter(path, clock=ticking_clock()) as w:
        for i in range(5):
            w.write("app", f"worker.{i % 2 + 1}", f"old {i}")
        lines = follow(path, LogFilter(proc="worker.1"), n=2, stop=stop, poll=0.01)
        assert messages(take(lines, 2)) == ["old 2", "old 4"]
        w.write("app", "worker.2", "not for us")
        w.write("app", "worker.1", "new")
        assert messages(take(lines, 1)) == ["new"]
        stop.set()
        assert list(lines) == []


def test_follow_holds_a_partial_line_until_it_is_complete(tmp_path, stop):
    path = tmp_path / "log"
    path.write_text("2026-11-22T10:04:05.123456+00:00 app[worker.1]: first\n")
    lines = follow(path, LogFilter(), n=1, stop=stop, poll=0.01)
    assert messages(take(lines, 1)) == ["first"]
    with open(path, "ab", buffering=0) as f:
        f.write(b"2026-11-22T10:04:05.123456+00:00 app[worker.1]: sec")
        f.write(b"ond\n2026-11-22T10:04:05.123456+00:00 app[worker.1]: third\n")
    assert messages(take(lines, 2)) == ["second", "third"]


def test_follow_catches_up_across_rotations_that_happen_while_it_waits(tmp_path, stop):
    path = tmp_path / "log"
    with LogWriter(path, max_bytes=1_000, backups=5, clock=ticking_clock()) as w:
        w.write("app", "worker.1", "n=-1 start")
        lines = follow(path, LogFilter(), n=1, stop=stop, poll=0.01)
        assert numbers(take(lines, 1)) == [-1]
        # The follower is suspended while the log rotates three times.
        for i in range(40):
            w.write("app", "worker.1", f"n={i} ".ljust(60, "."))
        assert len(files_oldest_first(path)) >= 4
        assert numbers(take(lines, 40)) == list(range(40))


def test_follow_survives_rotation_without_backups(tmp_path, stop):
    path = tmp_path / "log"
    with LogWriter(path, max_bytes=1_000, backups=0, clock=ticking_clock()) as w:
        w.write("app", "worker.1", "n=-1 start")
        lines = follow(path, LogFilter(), n=1, stop=stop, poll=0.01)
        assert numbers(take(lines, 1)) == [-1]
        # Exactly one rotation (9 lines fill a file): the full file is unlinked, not
        # renamed, and the follower still holding it finishes it before moving on.
        for i in range(12):
            w.write("app", "worker.1", f"n={i} ".ljust(60, "."))
        assert not files_oldest_first(path)[:-1]
        assert numbers(take(lines, 12)) == list(range(12))


def test_follow_that_fell_behind_the_backups_goes_on_without_repeating(tmp_path, stop):
    path = tmp_path / "log"
    with LogWriter(path, max_bytes=1_000, backups=2, clock=ticking_clock()) as w:
        w.write("app", "worker.1", "n=-1 start")
        lines = follow(path, LogFilter(), n=1, stop=stop, poll=0.01)
        assert numbers(take(lines, 1)) == [-1]
        for i in range(60):  # six rotations: files the follower never opened are dropped
            w.write("app", "worker.1", f"n={i} ".ljust(60, "."))
        newest = numbers(path.read_text().splitlines())
        seen = numbers(list(consume_until(lines, f"n={newest[-1]} ".ljust(60, "."))))
    assert seen == sorted(set(seen))
    assert seen[-len(newest):] == newest


def test_follow_goes_on_with_a_log_deleted_by_hand(tmp_path, stop):
    path = tmp_path / "log"
    with LogWriter(path, max_bytes=1_000, backups=3, clock=ticking_clock()) as w:
        for i in range(12):  # one rotation, so an older log.1 exists
            w.write("app", "worker.1", f"n={i} ".ljust(60, "."))
        lines = follow(path, LogFilter(), n=1, stop=stop, poll=0.01)
        assert numbers(take(lines, 1)) == [11]
        w.write("app", "worker.1", "n=12")
        path.unlink()
        w.write("app", "worker.1", "n=13")
        w.write("app", "worker.1", "n=14")
        assert numbers(take(lines, 3)) == [12, 13, 14]
