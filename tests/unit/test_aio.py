"""djctl.aio (issue 13): what a job returns is run to its end on one loop per process."""

from __future__ import annotations

import asyncio
import signal

import pytest

from djctl import aio


class Stop(Exception):
    pass


def test_a_plain_value_passes_through():
    assert aio.finish(None) is None
    assert aio.finish(42) == 42


def test_a_coroutine_is_awaited_to_its_end_on_the_same_loop_each_time():
    seen = []

    async def body(n: int) -> int:
        await asyncio.sleep(0)
        seen.append(asyncio.get_running_loop())
        return n * 2

    assert aio.finish(body(1)) == 2
    assert aio.finish(body(2)) == 4
    assert seen[0] is seen[1] is aio.loop()


def test_any_awaitable_is_awaited():
    class Later:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return "done"

    assert aio.finish(Later()) == "done"


def test_what_a_coroutine_raises_is_raised():
    async def body() -> None:
        raise ValueError("async boom")

    with pytest.raises(ValueError, match="async boom"):
        aio.finish(body())


@pytest.mark.parametrize("kind", ["generator", "async generator"])
def test_a_generator_is_an_error_not_a_silent_success(kind):
    def gen():
        yield 1

    async def agen():
        yield 1

    with pytest.raises(TypeError, match=f"returned an? {kind}"):
        aio.finish(gen() if kind == "generator" else agen())


def test_an_exception_raised_by_a_signal_cancels_the_task_and_the_loop_serves_on():
    notes = []

    async def sleeper() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            notes.append("cancelled")
            raise

    def on_alarm(_sig, _frame):
        raise Stop("past max_run_time")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(Stop):
            aio.finish(sleeper())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert notes == ["cancelled"]
    assert not asyncio.all_tasks(aio.loop())

    async def next_job() -> str:
        await asyncio.sleep(0)
        return "ran"

    assert aio.finish(next_job()) == "ran"
