"""Handlers are JSON: values round-trip losslessly, anything else is refused at enqueue, and
decoding imports nothing outside the allowed packages. No database needed."""

from __future__ import annotations

import datetime as dt
import json
import socket
import sys
import uuid
from decimal import Decimal

import pytest

from djctl import payload
from djctl.handlers import encode_call, encode_job, load
from djctl.payload import Decoder, HandlerError
from tests import jobs
from tests.jobs import Color, Level, Point

ALLOWED = ("tests.jobs",)

VALUES = [
    None,
    True,
    0,
    -(2**70),
    1.5,
    "héllo ✓",
    [1, [2, "x"]],
    {"a": {"b": [None]}},
    (1, "two", (3.0,)),
    {1, 2, 3},
    frozenset({"a"}),
    dt.datetime(2026, 11, 22, 10, 4, 5, 123456),
    dt.datetime(2026, 11, 22, 10, 4, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    dt.date(2026, 2, 28),
    dt.time(23, 59, 59, 999999),
    dt.timedelta(days=-1, seconds=3, microseconds=7),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("3.14159265358979323846264338327950288"),
    Decimal("-0.00"),
    Color.BLUE,
    Level.HIGH,
    b"\x00\xff bytes",
    Point(1, 2),
    {"nested": [Color.RED, (Decimal("1.10"), uuid.UUID(int=5))]},
]


def roundtrip(value):
    encoded = payload.encode_value(value)
    text = payload.dumps(encoded)
    return Decoder(ALLOWED).value(json.loads(text))


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_round_trip_losslessly(value):
    back = roundtrip(value)
    assert back == value
    assert type(back) is type(value)
    if isinstance(value, dt.datetime):
        assert back.tzinfo == value.tzinfo
    if isinstance(value, Decimal):
        assert str(back) == str(value)
    if isinstance(value, tuple):
        assert all(type(a) is type(b) for a, b in zip(back, value, strict=True))


def _local_class():
    class Local:
        def perform(self):
            pass

    return Local


@pytest.mark.parametrize(
    "value, words",
    [
        (lambda: 1, "cannot be stored"),
        (float("nan"), "not a finite number"),
        (float("inf"), "not a finite number"),
        ({1: "a"}, "not a string"),
        ({("a",): 1}, "not a string"),
        ({"__djctl__": 1}, "reserved"),
        (object(), "cannot be stored"),
        (print, "cannot be stored"),
        (_local_class()(), "module level"),
    ],
    ids=["lambda", "nan", "inf", "int-key", "tuple-key", "reserved-key", "object", "builtin", "local-class"],
)
def test_unstorable_values_are_refused_with_type_error(value, words):
    with pytest.raises(TypeError, match=words):
        payload.encode_value(value, "argument")


def test_builtins_and_main_are_refused_at_enqueue_saying_what_to_do():
    with pytest.raises(TypeError, match="print is a Python builtin, which no app allows a worker to run"):
        payload.name_of(print)
    main_fn = type("Report", (), {"__module__": "__main__", "__qualname__": "Report"})
    with pytest.raises(TypeError, match=r"Report is defined in __main__ \(the script being run\), which workers "
                                        "cannot import: move it into a module of your app"):
        payload.name_of(main_fn)


def test_a_socket_is_refused():
    with socket.socket() as s, pytest.raises(TypeError, match="socket cannot be stored"):
        payload.encode_value({"conn": s})


def test_a_local_job_class_is_refused():
    with pytest.raises(TypeError, match="module level"):
        encode_job(_local_class()())


def test_a_job_needs_perform():
    with pytest.raises(TypeError, match="no perform"):
        encode_job(Point(1, 2))


def test_error_names_where_the_bad_value_is():
    with pytest.raises(TypeError, match=r"Touch attribute\['key'\]"):
        encode_job(jobs.Touch("/tmp/x", key=float("nan")))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"keyword argument\['x'\]"):
        encode_call(jobs.record, None, (), {"x": lambda: 0})


def test_jobs_and_calls_decode_to_what_was_encoded(tmp_path):
    out = tmp_path / "out"
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    data = encode_call(jobs.record, None, (str(out), when, Decimal("1.0")), {"k": (1, Color.RED)})
    handler = payload.dumps(data)
    loaded = load(handler, Decoder(ALLOWED))
    assert loaded.name == "record"
    loaded.perform()
    assert out.read_text().strip() == repr(((when, Decimal("1.0")), {"k": (1, Color.RED)}))

    touch = load(payload.dumps(encode_job(jobs.Touch(str(out), "k1"))), Decoder(ALLOWED))
    assert touch.name == "Touch"
    assert touch.target == jobs.Touch(str(out), "k1")

    mailer = jobs.Mailer(str(out), "ann")
    method = load(payload.dumps(encode_call(None, mailer, ("bob",), {}, method="send")), Decoder(ALLOWED))
    assert method.name == "Mailer#send"
    method.perform()
    assert out.read_text().splitlines()[-1] == "ann->bob@-"


@pytest.fixture
def marker_module(tmp_path, monkeypatch):
    """A module on sys.path that writes a marker file when imported."""
    name = f"djctl_marker_{tmp_path.name.replace('-', '_')}"
    marker = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        "class Evil:\n    def perform(self):\n        pass\n"
        "def run(*a):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


@pytest.mark.parametrize(
    "shape",
    [
        lambda m: {"job": f"{m}:Evil", "state": {}},
        lambda m: {"call": f"{m}:run", "args": [], "kwargs": {}},
        lambda m: {"call": "tests.jobs:record", "args": [{"__djctl__": "obj", "cls": f"{m}:Evil", "state": {}}],
                   "kwargs": {}},
        lambda m: {"call": "tests.jobs:record", "args": [], "kwargs": {"e": {"__djctl__": "enum", "cls": f"{m}:E",
                                                                              "v": 1}}},
        lambda m: {"call": f"{m}:Evil.perform", "self": {}, "args": [], "kwargs": {}},
    ],
    ids=["job", "call", "nested-object", "nested-enum", "method"],
)
def test_nothing_outside_the_allowed_packages_is_imported(marker_module, shape):
    name, marker = marker_module
    with pytest.raises(HandlerError, match="outside the allowed packages"):
        load(json.dumps(shape(name)), Decoder(ALLOWED))
    assert name not in sys.modules
    assert not marker.exists()


@pytest.mark.parametrize(
    "target",
    ["os:system", "tests.jobs:os.system", "tests.jobs:time.sleep", "tests.jobs:Path", "tests.jobsx:Touch",
     "tests:jobs"],
)
def test_names_that_leave_the_allowed_packages_are_refused(target):
    with pytest.raises(HandlerError, match="outside the allowed packages"):
        load(json.dumps({"call": target, "args": ["true"], "kwargs": {}}), Decoder(ALLOWED))


@pytest.mark.parametrize(
    "handler, words",
    [
        ("not json{", "not valid JSON"),
        ("[1, 2]", "not a djctl job"),
        ('{"job": "tests.jobs:Gone", "state": {}}', "no longer exists"),
        ('{"job": "tests.jobs_gone:Gone", "state": {}}', "outside the allowed packages"),
        ('{"job": "tests.jobs:Touch.__init__.__globals__", "state": {}}', "dunder"),
        ('{"job": "tests.jobs:Point", "state": {"x": 1, "y": 2}}', "no perform"),
        ('{"job": "tests.jobs:Touch", "state": [1]}', "not an object"),
        ('{"job": "notaname", "state": {}}', "expected 'module:qualname'"),
        ('{"call": "tests.jobs:record", "args": [{"__djctl__": "uuid", "v": "zz"}], "kwargs": {}}', "does not decode"),
        ('{"call": "tests.jobs:record", "args": [{"__djctl__": "pickle", "v": ""}], "kwargs": {}}', "unknown value"),
        ('{"call": "tests.jobs:record", "args": {}, "kwargs": []}', "do not decode"),
        ('{"call": "tests.jobs:Mailer.send", "self": "a string", "args": [], "kwargs": {}}', "not a"),
        ('{"call": "tests.jobs:Mailer.upper", "self": "a string", "args": [], "kwargs": {}}', "not a"),
    ],
)
def test_handlers_that_do_not_decode_raise_handler_error(handler, words):
    with pytest.raises(HandlerError, match=words):
        load(handler, Decoder(ALLOWED))


def test_handlers_are_plain_json_naming_module_and_qualname():
    data = encode_job(jobs.Touch("/p", "k"))
    assert json.loads(payload.dumps(data)) == {"job": "tests.jobs:Touch", "state": {"path": "/p", "key": "k",
                                                                                    "seconds": 0.0}}
    call = encode_call(jobs.Mailer.broadcast, None, ("/p", "hi"), {})
    assert call["call"] == "tests.jobs:Mailer.broadcast"
