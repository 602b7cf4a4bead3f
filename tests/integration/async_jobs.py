"""Coroutine jobs of every shape the tests enqueue; each appends a line to a file when its body ends."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import djctl


def add_line(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text + "\n")


_shared: dict[str, object] = {}


async def pool_token() -> str:
    """A stand-in for an app's async pool: made once, bound to the loop it was made on."""
    loop = asyncio.get_running_loop()
    if _shared.get("loop") is not loop:
        _shared["loop"] = loop
        _shared["token"] = f"{os.getpid()}:{id(loop)}"
    return str(_shared["token"])


@djctl.job
@dataclass
class AsyncPerform:
    path: str
    key: str

    async def perform(self) -> None:
        await asyncio.sleep(0.01)
        add_line(self.path, f"{self.key} {await pool_token()}")


@djctl.job
@dataclass
class ReturnsAwaitable:
    """A plain perform that hands back a coroutine: it too must run."""

    path: str

    def perform(self):
        return self._later()

    async def _later(self) -> None:
        await asyncio.sleep(0)
        add_line(self.path, "returned")


@djctl.job
async def async_function(path: str, key: str) -> None:
    await asyncio.sleep(0.01)
    add_line(path, key)


@djctl.job
@dataclass
class Photo:
    path: str

    async def upload(self, size: int) -> None:
        await asyncio.sleep(0.01)
        add_line(self.path, f"upload {size}")

    @djctl.handle_asynchronously
    async def resize(self, width: int) -> None:
        await asyncio.sleep(0.01)
        add_line(self.path, f"resize {width}")


@djctl.handle_asynchronously
async def later(path: str, key: str) -> None:
    await asyncio.sleep(0.01)
    add_line(path, key)


@djctl.job
@dataclass
class AsyncHooks:
    path: str
    fail: bool = False
    max_attempts = 1

    async def before(self) -> None:
        await asyncio.sleep(0)
        add_line(self.path, "before")

    async def perform(self) -> None:
        await asyncio.sleep(0)
        if self.fail:
            raise ValueError("async boom")
        add_line(self.path, "perform")

    async def success(self) -> None:
        await asyncio.sleep(0)
        add_line(self.path, "success")

    async def error(self, exc: BaseException) -> None:
        await asyncio.sleep(0)
        add_line(self.path, f"error {type(exc).__name__}")

    async def failure(self) -> None:
        await asyncio.sleep(0)
        add_line(self.path, "failure")

    async def after(self) -> None:
        await asyncio.sleep(0)
        add_line(self.path, "after")


@djctl.job
@dataclass
class AsyncFail:
    message: str = "async boom"

    async def perform(self) -> None:
        await asyncio.sleep(0)
        raise RuntimeError(self.message)


@djctl.job
@dataclass
class AsyncSleeper:
    """Writes ``start``, sleeps on the loop past its own max_run_time, and would write ``end``."""

    path: str
    seconds: float
    max_run_time = 0.3

    async def perform(self) -> None:
        add_line(self.path, "start")
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            add_line(self.path, "cancelled")
            raise
        add_line(self.path, "end")


@djctl.job
@dataclass
class AsyncGeneratorJob:
    path: str

    async def perform(self):
        add_line(self.path, "ran")
        yield 1
