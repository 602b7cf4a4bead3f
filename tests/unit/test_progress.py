"""djctl.progress's channel: checked arguments, calls folded, the last value always sent."""

from __future__ import annotations

import os

import pytest

import djctl
from djctl.worker import progress as channel
from djctl.worker.messages import Progress, decode_reply
from tests.support.waiting import wait_for


def _read(fd: int) -> list[Progress]:
    os.set_blocking(fd, False)
    try:
        data = os.read(fd, 1 << 20)
    except BlockingIOError:
        return []
    return [decode_reply(line) for line in data.splitlines()]  # type: ignore[misc]


def test_outside_a_job_progress_does_nothing():
    djctl.progress(0.5, "no job here")


@pytest.mark.parametrize("args, error", [((1.5,), ValueError), ((-0.1,), ValueError), ((float("nan"),), ValueError),
                                         (("half",), TypeError), ((True,), TypeError), ((0.5, 7), TypeError)])
def test_bad_arguments_are_refused(args, error):
    with pytest.raises(error):
        djctl.progress(*args)


def test_a_tight_loop_costs_a_few_writes_and_the_last_value_arrives():
    r, w = os.pipe()
    channel.bind(w, 7)
    try:
        for i in range(10_000):
            djctl.progress(i / 10_000, f"item {i}\nof 10000")
        got: list[Progress] = []
        wait_for(lambda: got.extend(_read(r)) or (got and got[-1].fraction == 0.9999), message="the last value")
        assert len(got) <= 3, got
        assert got[-1] == Progress(7, 0.9999, "item 9999 of 10000")
        channel.unbind()
        djctl.progress(1.0, "after the job")
        assert _read(r) == []
    finally:
        channel.unbind()
        os.close(r)
        os.close(w)
