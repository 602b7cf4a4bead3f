"""The one error line: what went wrong, in a line a person can read."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message — the driver's own for a wrapped database error
    (a DBAPIError's ``.orig``), not SQLAlchemy's wrapping — or its class name when it has none."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
