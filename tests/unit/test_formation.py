"""What should run: the Procfile, the scale grammar and the saved formation."""

from __future__ import annotations

import json
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from djctl.daemon.formation import (
    MAX_PER_TYPE,
    FormationStore,
    ProcfileError,
    ScaleError,
    StateFileError,
    format_formation,
    load_process_types,
    parse_procfile,
    parse_scale,
)

# --- Procfile --------------------------------------------------------------------------


def test_procfile_keeps_order_and_skips_comments_and_blank_lines():
    text = (
        "# the app's processes\n"
        "\n"
        "worker: djctl work --queues default\r\n"
        "  mail-out:djctl work --queues mail   \n"
        "   # indented comment\n"
        "reports_2:  sh -c 'echo a: b # not a comment'\n"
    )
    types = parse_procfile(text)
    assert list(types) == ["worker", "mail-out", "reports_2"]
    assert types == {
        "worker": "djctl work --queues default",
        "mail-out": "djctl work --queues mail",
        "reports_2": "sh -c 'echo a: b # not a comment'",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("worker: djctl work\n\nfoo\n", "Procfile line 3: expected 'name: command', got 'foo'"),
        ("worker:\n", "Procfile line 1: expected 'name: command', got 'worker:'"),
        ("web worker: run\n", "Procfile line 1: expected 'name: command', got 'web worker: run'"),
        ("worker.1: run\n", "Procfile line 1: expected 'name: command', got 'worker.1: run'"),
        (
            "worker: a\nmail: b\nworker: c\n",
            "Procfile line 3: process type 'worker' is defined twice (first on line 1); keep one",
        ),
        ("djctl: run\n", "Procfile line 1: process type 'djctl' is reserved by djctl; rename it"),
        ("# nothing\n\n", "Procfile defines no process types; add a line like 'worker: djctl work'"),
    ],
)
def test_procfile_errors_name_the_line(text, message):
    with pytest.raises(ProcfileError) as e:
        parse_procfile(text)
    assert str(e.value) == message


def test_process_types_default_to_one_worker(tmp_path):
    assert load_process_types(tmp_path) == {"worker": "djctl work"}


def test_process_types_come_from_the_procfile(tmp_path):
    (tmp_path / "Procfile").write_text("worker: djctl work\nmail: djctl work --queues mail\n")
    assert load_process_types(tmp_path) == {
        "worker": "djctl work",
        "mail": "djctl work --queues mail",
    }


def test_a_bad_procfile_error_names_the_file(tmp_path):
    (tmp_path / "Procfile").write_text("worker djctl work\n")
    with pytest.raises(ProcfileError, match=rf"^{tmp_path}/Procfile line 1: expected"):
        load_process_types(tmp_path)
    (tmp_path / "Procfile").write_bytes(b"worker: \xff\xfe\n")
    with pytest.raises(ProcfileError, match="not UTF-8"):
        load_process_types(tmp_path)


# --- scale -----------------------------------------------------------------------------

TYPES = ["worker", "mail", "mail-out"]
CURRENT = {"worker": 2, "mail": 1}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["worker=3"], {"worker": 3, "mail": 1, "mail-out": 0}),
        (["worker+1"], {"worker": 3, "mail": 1, "mail-out": 0}),
        (["worker-1"], {"worker": 1, "mail": 1, "mail-out": 0}),
        (["worker-2"], {"worker": 0, "mail": 1, "mail-out": 0}),
        (["worker=0", "mail=4", "mail-out=2"], {"worker": 0, "mail": 4, "mail-out": 2}),
        (["worker+1", "worker+1"], {"worker": 4, "mail": 1, "mail-out": 0}),
        (["mail-out+2", "mail-out-1"], {"worker": 2, "mail": 1, "mail-out": 1}),
        (["worker=2 mail=3"], {"worker": 2, "mail": 3, "mail-out": 0}),
        ([f"worker={MAX_PER_TYPE}"], {"worker": MAX_PER_TYPE, "mail": 1, "mail-out": 0}),
    ],
)
def test_scale_gives_the_new_full_formation(args, expected):
    result = parse_scale(args, CURRENT, TYPES)
    assert result == expected
    assert list(result) == TYPES


def test_scale_drops_types_the_procfile_no_longer_has():
    assert parse_scale(["worker+1"], {"worker": 1, "gone": 3}, ["worker"]) == {"worker": 2}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to scale; use TYPE=N, TYPE+N or TYPE-N (e.g. worker=2)"),
        ([""], "nothing to scale; use TYPE=N, TYPE+N or TYPE-N (e.g. worker=2)"),
        (["worker=abc"], "'worker=abc': 'abc' is not a whole number"),
        (["worker=2.5"], "'worker=2.5': '2.5' is not a whole number"),
        (["worker="], "'worker=': '' is not a whole number"),
        (["worker+"], "'worker+': '' is not a whole number"),
        (["worker=-1"], "'worker=-1': the number of processes cannot be negative"),
        (["worker-3"], "'worker-3': worker is at 2 and cannot go below 0"),
        (["web=1"], "unknown process type 'web'; known types: worker, mail, mail-out"),
        (["worker"], "'worker' is not a scale; use TYPE=N, TYPE+N or TYPE-N (e.g. worker=2)"),
        (["=2"], "'=2' is not a scale; use TYPE=N, TYPE+N or TYPE-N (e.g. worker=2)"),
        (["worker=101"], "'worker=101': at most 100 processes per type"),
        (["worker+99"], "'worker+99': at most 100 processes per type"),
        (["worker=" + "9" * 5000], "'worker=999999999999999999999999999999...': at most 100 processes per type"),
        (["worker=١"], "'worker=١': '١' is not a whole number"),
    ],
)
def test_scale_errors_are_one_clear_line(args, message):
    with pytest.raises(ScaleError) as e:
        parse_scale(args, CURRENT, TYPES)
    assert str(e.value) == message


def test_scale_names_the_problem_when_no_type_is_known():
    with pytest.raises(ScaleError, match="no process types are defined"):
        parse_scale(["worker=1"], {}, [])


type_names = st.from_regex(r"[A-Za-z0-9_-]{1,15}", fullmatch=True)
counts = st.integers(0, MAX_PER_TYPE)


@st.composite
def formations(draw):
    """(types, current, target): two formations over the same types."""
    types = draw(st.lists(type_names, min_size=1, max_size=6, unique=True))
    current = {t: draw(counts) for t in types if draw(st.booleans())}
    target = {t: draw(counts) for t in types}
    return types, current, target


@given(formations())
def test_a_formatted_formation_parses_back(case):
    types, current, target = case
    text = format_formation(target)
    assert parse_scale(text.split(), current, types) == target
    assert parse_scale([text], current, types) == target


@given(formations())
def test_relative_scales_move_from_the_current_formation(case):
    types, current, target = case
    args = []
    for t in types:
        delta = target[t] - current.get(t, 0)
        args.append(f"{t}+{delta}" if delta >= 0 else f"{t}-{-delta}")
    assert parse_scale(args, current, types) == target


near_misses = st.from_regex(r"[a-z\-]{0,8}[=+\-]{1,2}[0-9a+\-. ]{0,6}", fullmatch=True)


@given(
    args=st.lists(st.one_of(st.text(), near_misses), max_size=5),
    case=formations(),
)
def test_any_text_is_a_formation_or_a_one_line_scale_error(args, case):
    types, current, _ = case
    try:
        result = parse_scale(args, current, types)
    except ScaleError as e:
        assert "\n" not in str(e) and str(e)
        return
    assert list(result) == types
    assert all(0 <= n <= MAX_PER_TYPE for n in result.values())


def test_format_formation_keeps_the_given_order():
    assert format_formation({"worker": 2, "mail": 1}) == "worker=2 mail=1"
    assert format_formation({}) == ""


# --- the saved formation ---------------------------------------------------------------


def test_nothing_saved_yet_loads_as_none(tmp_path):
    assert FormationStore(tmp_path / "formation.json").load() is None


def test_saved_formation_loads_back_in_order(tmp_path):
    store = FormationStore(tmp_path / "state" / "formation.json")
    store.save({"worker": 2, "mail": 0, "reports": 1})
    loaded = store.load()
    assert loaded == {"worker": 2, "mail": 0, "reports": 1}
    assert list(loaded) == ["worker", "mail", "reports"]
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700


def test_save_replaces_the_file_by_rename_and_leaves_no_temporary(tmp_path):
    store = FormationStore(tmp_path / "formation.json")
    store.save({"worker": 1})
    before = store.path.stat().st_ino
    store.save({"worker": 3})
    assert store.path.stat().st_ino != before  # a new file renamed over, not rewritten
    assert store.load() == {"worker": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["formation.json"]


def test_save_refuses_a_formation_it_could_not_load(tmp_path):
    store = FormationStore(tmp_path / "formation.json")
    for bad in ({"worker": -1}, {"worker": MAX_PER_TYPE + 1}, {"bad name": 1}, {"worker": True}):
        with pytest.raises(ValueError, match="cannot save formation"):
            store.save(bad)
    assert not store.path.exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not JSON"),
        (b"{\"version\": 1, \"formation\": {\"worker\": 2}", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", 'expected an object with "version": 1'),
        (b'{"formation": {"worker": 2}}', 'expected an object with "version": 1'),
        (b'{"version": 1, "formation": [2]}', '"formation" is not an object'),
        (b'{"version": 1, "formation": {"worker": -1}}', "worker: count -1 is not a whole number"),
        (b'{"version": 1, "formation": {"worker": "2"}}', "worker: count '2' is not a whole number"),
        (b'{"version": 1, "formation": {"worker": 2.0}}', "worker: count 2.0 is not a whole number"),
        (b'{"version": 1, "formation": {"worker": true}}', "worker: count True is not a whole number"),
        (b'{"version": 1, "formation": {"a b": 1}}', "bad process type 'a b'"),
    ],
)
def test_a_corrupt_state_file_is_reported_never_reset(tmp_path, content, reason):
    path = tmp_path / "formation.json"
    path.write_bytes(content)
    with pytest.raises(StateFileError) as e:
        FormationStore(path).load()
    message = str(e.value)
    assert message.startswith(f"state file {path} is corrupt (")
    assert reason in message
    assert message.endswith("); fix or delete it")
    assert "\n" not in message
    assert path.read_bytes() == content


def test_state_file_written_by_save_is_plain_json(tmp_path):
    store = FormationStore(tmp_path / "formation.json")
    store.save({"worker": 2})
    assert json.loads(store.path.read_text()) == {"version": 1, "formation": {"worker": 2}}
