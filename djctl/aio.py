"""Coroutine jobs: the one event loop of an executor, and running what a job returns on it.

A job's ``perform``, a delayed async function or an async hook returns a coroutine;
calling it is not running it. Everything a job or hook returns passes through
:func:`finish`, so an awaitable is awaited to its end (or fails the job) and is never
dropped with the job reported done.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import traceback
from typing import Any

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None


def loop() -> asyncio.AbstractEventLoop:
    """This process's job loop, made on first use and kept for every later job.

    Kept, not made per job, so that what an application opens on it (an async
    connection pool, an HTTP client) survives from one job to the next. A forked
    child makes its own: a loop cannot be shared across fork.
    """
    global _loop, _loop_pid
    if _loop is None or _loop_pid != os.getpid() or _loop.is_closed():
        _loop = asyncio.new_event_loop()
        _loop_pid = os.getpid()
        asyncio.set_event_loop(_loop)
    return _loop


def finish(value: Any) -> Any:
    """``value``, or if it is awaitable, its result once awaited to the end on :func:`loop`.

    Raises what the awaitable raises. A generator (sync or async) is an error: its body
    would never run. An exception raised into this thread while the job waits (the
    max_run_time signal) cancels the job's task and waits for it to unwind, so the loop
    is idle and usable for the next job; then the exception propagates.
    """
    if inspect.isasyncgen(value) or inspect.isgenerator(value):
        kind = "an async generator" if inspect.isasyncgen(value) else "a generator"
        raise TypeError(f"the job returned {kind}, whose body djctl cannot run; make it a plain or async function")
    if not inspect.isawaitable(value):
        return value
    running = loop()
    task = running.create_task(_await(value))
    try:
        return running.run_until_complete(task)
    except BaseException as exc:
        if not task.done():
            # Raised in the loop, not in the job: say where the job's own code was waiting.
            where = _where(task)
            if where:
                exc.add_note(where)
            _cancel(running, task)
        raise


def _where(task: asyncio.Task) -> str:
    """The job's coroutine stack as a traceback's lines, most recent call last."""
    frames = []
    awaiting: Any = task.get_coro()
    while awaiting is not None:  # the chain of awaits, outermost first: coroutines, async generators
        frame = getattr(awaiting, "cr_frame", None) or getattr(awaiting, "ag_frame", None)
        if frame is not None and frame.f_code is not _await.__code__:
            frames.append(frame)
        awaiting = getattr(awaiting, "cr_await", None) or getattr(awaiting, "ag_await", None)
    if not frames:
        return ""
    stack = traceback.StackSummary.extract((f, f.f_lineno) for f in frames)
    return "The job was waiting here (most recent call last):\n" + "".join(stack.format()).rstrip()


async def _await(value: Any) -> Any:
    return await value


def _cancel(running: asyncio.AbstractEventLoop, task: asyncio.Task) -> None:
    task.cancel()
    try:
        running.run_until_complete(task)
    except BaseException:  # noqa: BLE001 - the job's own exception is the one reported
        pass

