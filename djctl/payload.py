"""Handlers as JSON: what a job is, encoded losslessly, and decoded only from allowed packages.

A handler is one JSON object, one of:

    {"job": "pkg.mod:Class", "state": {...}}                      an object with perform()
    {"call": "pkg.mod:func", "args": [...], "kwargs": {...}}      a function
    {"call": "pkg.mod:Class.meth", "self": V, "args": ..., ...}   a method of an object

Values that JSON cannot carry are tagged objects ``{"__djctl__": kind, ...}``. Nothing
is ever unpickled; a name is imported only when its module lies under an allowed package.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import importlib
import json
import math
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

TAG = "__djctl__"
MAX_DEPTH = 100
"""How deeply a job's arguments may nest (lists, dicts, tuples, sets, objects): deep
enough for any real data, shallow enough that every worker decodes what was accepted."""
_PLAIN = (str, int, bool)  # exactly these types: subclasses (enums) are tagged


class HandlerError(Exception):
    """A handler that cannot be run: it does not decode, or names code outside the allowed packages."""


class RecordNotFound(HandlerError):
    """A database object the job refers to no longer exists."""


class NotAllowed(HandlerError):
    """The handler names code outside the allowed packages."""


class Unimportable(HandlerError):
    """The handler's (allowed) module does not import now — it is missing, has a syntax
    error or raises as it loads: a deploy may be under way, or a fix be on its way."""


class MissingName(HandlerError):
    """The handler names something its (allowed, importable) module does not have: the
    code that enqueued it may be newer than the code this process loaded."""


# -- names -------------------------------------------------------------------

_registered: set[str] = set()


def register_module(module: str) -> None:
    """Allow jobs to name code from ``module`` (done by djctl's decorators)."""
    _registered.add(module)


def allowed_packages(extra: Iterable[str] = ()) -> tuple[str, ...]:
    from djctl import config

    settings = config.current()
    return tuple(sorted({*settings.app, *settings.allow, *_registered, *extra}))


def is_allowed(module: str, packages: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def name_of(obj: Any) -> str:
    """``module:qualname`` for an importable class or function; TypeError for anything else."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    what = qualname or type(obj).__name__
    if module == "__main__":
        raise TypeError(f"{what!s} is defined in __main__ (the script being run), which workers cannot "
                        "import: move it into a module of your app")
    if module == "builtins":
        raise TypeError(f"{what!s} is a Python builtin, which no app allows a worker to run: "
                        "call it from a function of your app, and enqueue that")
    if not module or not qualname or "<" in qualname:
        raise TypeError(f"{what!s} cannot be named in a job: define it at module level in an importable module")
    return f"{module}:{qualname}"


def resolve(name: str, packages: Iterable[str]) -> Any:
    """The object ``module:qualname`` names, importing its module only if it is allowed."""
    packages = tuple(packages)
    module, sep, qualname = name.partition(":") if isinstance(name, str) else ("", "", "")
    if not sep or not module or not qualname:
        raise HandlerError(f"handler names {name!r}, expected 'module:qualname'")
    if not is_allowed(module, packages):
        raise NotAllowed(
            f"handler names module {module!r}, which is outside the allowed packages "
            f"({', '.join(packages) or 'none configured: set --app or DJ_APP'})"
        )
    try:
        obj: Any = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - importing an application module may raise anything
        raise Unimportable(
            f"handler names module {module!r}, which cannot be imported: {type(e).__name__}: {e}; "
            "fix it and restart the workers (djctl restart) - the job is retried meanwhile"
        ) from e
    for part in qualname.split("."):
        if part.startswith("__"):
            raise HandlerError(f"handler names {name!r}: dunder attributes are not allowed")
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise MissingName(missing_text(name)) from None
    owner = getattr(obj, "__module__", module)
    if isinstance(owner, str) and not is_allowed(owner, packages):
        raise NotAllowed(f"handler names {name!r}, defined in {owner!r} outside the allowed packages")
    return obj


def missing_text(name: str) -> str:
    """What a worker says of a job naming ``name``, which its code does not have."""
    return (f"handler names {name!r}, which no longer exists in the code this worker loaded; "
            "if a deploy added it, restart the workers (djctl restart) - it is retried meanwhile")


# -- values ------------------------------------------------------------------

def _is_orm(obj: Any) -> bool:
    return hasattr(type(obj), "__mapper__") and hasattr(obj, "_sa_instance_state")


def encode_value(value: Any, where: str = "argument", depth: int = 0) -> Any:
    """``value`` as JSON-ready data, losslessly; TypeError naming ``where`` if it cannot be
    stored, ValueError if it nests more than :data:`MAX_DEPTH` levels deep."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if depth >= MAX_DEPTH:
        # Checked here rather than caught as RecursionError: the limit must leave the
        # worker's decoder (JSON, then these tags) room to spare, and name the argument.
        raise ValueError(f"{where}: nested more than {MAX_DEPTH} levels deep; djctl stores at most {MAX_DEPTH}")
    d = depth + 1
    if isinstance(value, enum.Enum):
        return {TAG: "enum", "cls": name_of(type(value)), "v": encode_value(value.value, where, d)}
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where}: {value!r} cannot be stored in a job (not a finite number)")
        return value
    if isinstance(value, list):
        return [encode_value(v, f"{where}[{i}]", d) for i, v in enumerate(value)]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return {TAG: "tuple", "v": [encode_value(v, f"{where}[{i}]", d) for i, v in enumerate(value)]}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: dictionary key {k!r} is not a string; JSON keys must be")
            if k == TAG:
                raise TypeError(f"{where}: the key {TAG!r} is reserved by djctl")
            # Plain values as they are, without building the path an error would name.
            out[k] = v if v is None or type(v) in _PLAIN else encode_value(v, f"{where}[{k!r}]", d)
        return out
    if isinstance(value, (set, frozenset)):
        kind = "set" if isinstance(value, set) else "frozenset"
        items = [encode_value(v, f"{where}{{}}", d) for v in value]
        return {TAG: kind, "v": sorted(items, key=lambda x: json.dumps(x, sort_keys=True))}
    if isinstance(value, dt.datetime):
        return {TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {TAG: "time", "v": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    if isinstance(value, Decimal):
        return {TAG: "decimal", "v": str(value)}
    if isinstance(value, bytes):
        return {TAG: "bytes", "v": base64.b64encode(value).decode()}
    if _is_orm(value):
        return _encode_orm(value, where)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        state = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {TAG: "obj", "cls": name_of(type(value)), "state": encode_value(state, where, d)}
    if hasattr(value, "__dict__") and not callable(value) and type(value).__module__ != "builtins":
        return {TAG: "obj", "cls": name_of(type(value)), "state": encode_value(vars(value), where, d)}
    raise TypeError(
        f"{where}: a {type(value).__name__} cannot be stored in a job; "
        "pass JSON data, datetimes, UUIDs, Decimals, enums, dataclasses or database objects"
    )


def _encode_orm(value: Any, where: str) -> dict:
    from sqlalchemy import inspect

    state = inspect(value)
    if state.identity is None:
        raise TypeError(f"{where}: {type(value).__name__} has no primary key yet; flush or commit it first")
    return {TAG: "orm", "cls": name_of(type(value)), "pk": [encode_value(v, where) for v in state.identity]}


class Decoder:
    """Turns handler data back into values, importing only from ``packages``."""

    def __init__(self, packages: Iterable[str], load_orm: Callable[[type, tuple], Any] | None = None):
        self.packages = tuple(packages)
        self.load_orm = load_orm or _no_database

    def value(self, data: Any) -> Any:
        if isinstance(data, list):
            return [self.value(v) for v in data]
        if not isinstance(data, dict):
            return data
        kind = data.get(TAG)
        if kind is None:
            return {k: self.value(v) for k, v in data.items()}
        try:
            return self._tagged(kind, data)
        except HandlerError:
            raise
        except (KeyError, TypeError, ValueError, ArithmeticError) as e:
            raise HandlerError(f"handler holds a {kind!r} value that does not decode: {e!r}") from None

    def _tagged(self, kind: str, data: dict) -> Any:
        v: Any = data.get("v")  # any JSON; a wrong shape raises, reported by value()
        match kind:
            case "tuple":
                return tuple(self.value(v))
            case "set":
                return set(self.value(v))
            case "frozenset":
                return frozenset(self.value(v))
            case "datetime":
                return dt.datetime.fromisoformat(v)
            case "date":
                return dt.date.fromisoformat(v)
            case "time":
                return dt.time.fromisoformat(v)
            case "timedelta":
                return dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2])
            case "uuid":
                return uuid.UUID(v)
            case "decimal":
                return Decimal(v)
            case "bytes":
                return base64.b64decode(v, validate=True)
            case "enum":
                return self._class(data["cls"], enum.Enum)(self.value(v))
            case "orm":
                cls = self._class(data["cls"], object)
                return self.load_orm(cls, tuple(self.value(data["pk"])))
            case "obj":
                return self.object(data["cls"], data.get("state", {}))
        raise HandlerError(f"handler holds an unknown value kind {kind!r}")

    def _class(self, name: str, base: type) -> type:
        cls = resolve(name, self.packages)
        if not isinstance(cls, type) or not issubclass(cls, base):
            raise HandlerError(f"handler names {name!r}, which is not a {base.__name__} class")
        return cls

    def object(self, name: str, state: Any) -> Any:
        """An instance of class ``name`` with ``state`` as its attributes, without calling __init__."""
        cls: type[object] = self._class(name, object)
        if not isinstance(state, dict):
            raise HandlerError(f"handler state for {name!r} is not an object")
        try:
            obj = cls.__new__(cls)
            for key, value in self.value(state).items():
                object.__setattr__(obj, key, value)
        except (TypeError, ValueError, AttributeError) as e:  # an enum, slots, a builtin...
            raise HandlerError(f"handler names {name!r}, which cannot be rebuilt from its state: {e}") from None
        return obj


def _no_database(cls: type, pk: tuple) -> Any:
    raise HandlerError(f"handler holds a database object ({cls.__name__}), and this decoder loads none")


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def dumps(data: Any) -> str:
    return _ENCODER.encode(data)


def loads(text: str) -> dict:
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as e:
        raise HandlerError(f"handler is not valid JSON: {e}") from None
    except RecursionError:
        raise HandlerError("handler is nested too deeply to decode") from None
    if not isinstance(data, dict) or ("job" not in data and "call" not in data):
        raise HandlerError("handler is not a djctl job (expected a 'job' or 'call' key)")
    return data
