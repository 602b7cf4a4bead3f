"""The console's brakes — pause or resume a queue, cancel a job — through queue.admin's
rules, in the console's words. Every function may block on the database: call it from a
thread worker."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from djctl.queue import admin, stats
from djctl.worker import identity


class ActionError(Exception):
    """An operator action could not be done; the message is one line to show."""


def _who() -> str:
    return admin.operator(identity.hostname(), "djctl top")


def pause_queue(engine: Engine, queue: str | None) -> str:
    """Pause ``queue`` (None: the default queue) on every host; the line to show."""
    name = stats.queue_label(queue)
    done = admin.pause(engine, [queue], _who(), force=True)  # it is on screen: a queue, not a typo
    if done.changed:
        return f"Paused queue {name}: no worker on any host claims from it until it is resumed (p)."
    return f"Queue {name} was already paused."


def resume_queue(engine: Engine, queue: str | None) -> str:
    """Resume ``queue``; the line to show. ActionError when only ``pause --all`` holds it."""
    name = stats.queue_label(queue)
    done = admin.resume(engine, [queue])
    if done.changed:
        return f"Resumed queue {name}: workers claim from it again."
    with engine.connect().execution_options(sqlite_read=True) as conn:
        every = stats.paused_queues(conn).get(stats.EVERY_QUEUE)
    if every is not None:
        raise ActionError(f"{every.sentence()}: resume them all with djctl resume --all")
    if done.unknown:
        raise ActionError(f"queue {name} is gone: no job is in it and it is not paused")
    return f"Queue {name} was not paused."


def cancel(engine: Engine, ids: Sequence[int]) -> int:
    """Cancel the jobs ``ids`` under the cancel rule; how many. ActionError (nothing
    cancelled) when one has failed already or is gone."""
    outcome = admin.cancel(engine, ids, _who())
    if outcome.refused:
        raise ActionError("; ".join(f"job {i} not cancelled: {_WHY[r]}" for i, r in sorted(outcome.refused.items())))
    return len(outcome.done)


_WHY = {admin.Refusal.UNKNOWN: "it is gone (it finished, or was deleted)",
        admin.Refusal.FAILED: "it has failed already"}
