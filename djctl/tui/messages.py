"""The messages the console's workers and panels post: one module, small dataclass-like classes."""

from __future__ import annotations

from textual.message import Message

from djctl.queue import lookup
from djctl.tui.model import JobFilter, Snapshot


class Loaded(Message):
    """A refresh finished (``snapshot``) or failed (``error``), having taken ``cost`` seconds."""

    def __init__(self, snapshot: Snapshot | None, error: str = "", cost: float = 0.0) -> None:
        super().__init__()
        self.snapshot, self.error, self.cost = snapshot, error, cost


class Done(Message):
    """An operator action finished: ``text`` to show, as an error or not."""

    def __init__(self, text: str, error: bool = False) -> None:
        super().__init__()
        self.text, self.error = text, error


class TracebackLoaded(Message):
    """The full last_error of failed job ``job_id`` arrived (None: it has none, or is gone)."""

    def __init__(self, job_id: int, traceback: str | None) -> None:
        super().__init__()
        self.job_id, self.traceback = job_id, traceback


class JobsFound(Message):
    """The jobs matching ``flt`` arrived (``error``: why none could be read)."""

    def __init__(self, flt: JobFilter, rows: list[lookup.JobRow], error: str = "") -> None:
        super().__init__()
        self.flt, self.rows, self.error = flt, rows, error


class JobRead(Message):
    """A job read whole for its detail view (None: it is gone), or why it could not be read."""

    def __init__(self, detail: lookup.JobDetail | None, error: str = "") -> None:
        super().__init__()
        self.detail, self.error = detail, error
