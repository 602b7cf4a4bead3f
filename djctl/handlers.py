"""What a handler describes, and the runnable job it decodes to (with delayed_job's hooks)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from djctl import aio, payload
from djctl.payload import HandlerError, MissingName, name_of


def default_backoff(attempts: int) -> timedelta:
    """How long a job waits before its next try after failing ``attempts`` times, unless it
    says otherwise (``reschedule_at``): ``attempts**4 + 5`` seconds, as delayed_job."""
    return timedelta(seconds=attempts**4 + 5)


def encode_job(job: Any) -> dict:
    """Handler data for an object with ``perform()``: its class and its attributes."""
    if not callable(getattr(job, "perform", None)):
        raise TypeError(f"{type(job).__name__} has no perform() method; use djctl.delay() for plain callables")
    cls: type = type(job)
    if dataclasses.is_dataclass(job):
        state = {name: getattr(job, name) for name in _field_names(cls)}
    else:
        state = dict(vars(job))
    return {"job": name_of(type(job)), "state": payload.encode_value(state, f"{type(job).__name__} attribute")}


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def encode_call(func: Any, self: Any, args: tuple, kwargs: dict, method: str | None = None) -> dict:
    """Handler data for a call of ``func``, or of ``self.method`` when ``method`` is given."""
    if method is not None:
        target = f"{name_of(type(self))}.{method}"
        data: dict = {"call": target, "self": payload.encode_value(self, "self")}
    else:
        data = {"call": name_of(func)}
    data["args"] = payload.encode_value(list(args), "argument")
    data["kwargs"] = payload.encode_value(dict(kwargs), "keyword argument")
    return data


def display_name(data: dict) -> str:
    """delayed_job's name for a job: ``NewsletterJob`` or ``Photo#upload``."""
    if "job" in data:
        return str(data["job"]).rpartition(":")[2]
    qual = str(data.get("call", "?")).rpartition(":")[2]
    if "self" in data and "." in qual:
        cls, _, meth = qual.rpartition(".")
        return f"{cls}#{meth}"
    return qual


def target_name(handler: str) -> str:
    """The code a handler names (``photos.jobs:WelcomeEmail``), for a job that cannot be
    loaded; ``(undecodable handler)`` when the handler is not a djctl job at all."""
    try:
        data = payload.loads(handler)
    except (HandlerError, RecursionError):
        return "(undecodable handler)"
    return str(data["job"] if "job" in data else data["call"])


@dataclasses.dataclass
class LoadedJob:
    """A decoded job, ready to perform; hooks and overrides come from the job object, if it has them."""

    name: str
    target: Any
    call: Callable[[], Any]

    def perform(self) -> Any:
        """Run the job to its end: a coroutine or other awaitable it returns is awaited."""
        return aio.finish(self.call())

    def hook(self, name: str, *args: Any) -> None:
        """Run the job's hook ``name``, if it has one, to its end (async hooks awaited)."""
        fn = getattr(self.target, name, None)
        if callable(fn):
            aio.finish(fn(*args))

    def max_attempts(self, default: int) -> int:
        value = getattr(self.target, "max_attempts", None)
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else default

    def max_run_time(self, default: timedelta) -> timedelta:
        """The job's own limit, never longer than the worker's (as delayed_job)."""
        value = getattr(self.target, "max_run_time", None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = timedelta(seconds=value)
        return min(value, default) if isinstance(value, timedelta) else default

    def reschedule_at(self, attempts: int, now: datetime) -> datetime:
        fn = getattr(self.target, "reschedule_at", None)
        if callable(fn):
            return fn(attempts, now)
        return now + default_backoff(attempts)


def load(handler: str, decoder: payload.Decoder) -> LoadedJob:
    """Decode ``handler`` into a runnable job; HandlerError if it cannot be."""
    try:
        return _load(handler, decoder)
    except RecursionError:
        raise HandlerError("handler is nested too deeply to decode") from None


def _load(handler: str, decoder: payload.Decoder) -> LoadedJob:
    data = payload.loads(handler)
    name = display_name(data)
    if "job" in data:
        job = decoder.object(data["job"], data.get("state", {}))
        if not callable(getattr(job, "perform", None)):
            raise HandlerError(f"handler names {data['job']!r}, which has no perform() method")
        return LoadedJob(name, job, job.perform)

    args = decoder.value(data.get("args", []))
    kwargs = decoder.value(data.get("kwargs", {}))
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise HandlerError("handler arguments do not decode to a list and an object")
    target_name = data["call"]
    if "self" in data:
        cls_name, _, method = str(target_name).rpartition(".")
        if not method or method.startswith("__"):
            raise HandlerError(f"handler names {target_name!r}, which is not a method")
        cls = decoder._class(cls_name, object)
        obj = decoder.value(data["self"])
        if not isinstance(obj, cls):
            # Otherwise a forged handler could call methods of any type (str, dict...).
            raise HandlerError(f"handler names {target_name!r} but its object is not a {cls.__name__}")
        fn = getattr(obj, method, None)
        if fn is None:
            raise MissingName(payload.missing_text(target_name))
        target: Any = obj
    else:
        fn = payload.resolve(target_name, decoder.packages)
        target = fn
    fn = getattr(fn, "now", fn)  # a handle_asynchronously method runs its original body
    if not callable(fn):
        raise HandlerError(f"handler names {target_name!r}, which is not callable")
    return LoadedJob(name, target, lambda: fn(*args, **kwargs))
