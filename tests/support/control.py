"""A control server on a real unix socket that echoes what it is asked, for the control tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from djctl.daemon.control import ControlError, Server
from djctl.daemon.paths import Paths, ensure_private_dir


def echo_handler(request: dict) -> dict:
    """Echo the request; ``boom`` is a usage error, ``crash`` a bug in the handler."""
    if request["cmd"] == "boom":
        raise ControlError("no such thing", usage=True)
    if request["cmd"] == "crash":
        raise RuntimeError("bug")
    return {"echo": request}


def serve(tmp_path: Path) -> Iterator[Server]:
    """A started :class:`Server` in an owner-only state dir under ``tmp_path``, for a fixture
    to ``yield from``; the uid/pid pairs it refused are in its ``refused`` list."""
    paths = Paths(ensure_private_dir(tmp_path / "state"))
    refused: list[tuple[int, int]] = []
    srv = Server(paths, echo_handler, on_refused=lambda pid, uid: refused.append((pid, uid)))
    srv.start()
    srv.refused = refused  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        srv.close()
