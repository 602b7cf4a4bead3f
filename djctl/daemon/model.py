"""The supervisor's process model: the states a process passes through and the record
of one process that ps, heartbeats and the console share."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any


class State(str, Enum):
    """A process's state, in Heroku's words."""

    STARTING = "starting"
    UP = "up"
    CRASHED = "crashed"
    STOPPING = "stopping"
    DOWN = "down"


@dataclass(frozen=True)
class ProcessInfo:
    """One supervised process as the outside world sees it (ps, heartbeats, the console).

    ``since`` is when it entered ``state``; ``pid`` is None while no child runs (crashed
    and waiting to restart); ``host`` is set only for rows read from the database."""

    name: str
    type: str
    pid: int | None
    state: State
    since: datetime
    command: str
    started_at: datetime | None = None
    host: str | None = None
    heartbeat_at: datetime | None = None
    progress: Mapping[str, Any] | None = None
    """The running job's last ``djctl.progress``: job_id, class, fraction, message."""

    def replace(self, **changes: Any) -> ProcessInfo:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """The JSON shape of the control protocol and ``ps --json``."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "pid": self.pid,
            "state": self.state.value,
            "since": self.since.isoformat(),
            "command": self.command,
        }
        if self.started_at is not None:
            out["started_at"] = self.started_at.isoformat()
        if self.progress is not None:
            out["progress"] = dict(self.progress)
        if self.host is not None:
            out["host"] = self.host
            out["heartbeat_at"] = self.heartbeat_at.isoformat() if self.heartbeat_at else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> ProcessInfo:
        """Inverse of :meth:`as_dict`."""
        beat = data.get("heartbeat_at")
        started = data.get("started_at")
        return cls(
            name=data["name"],
            type=data["type"],
            pid=data.get("pid"),
            state=State(data["state"]),
            since=datetime.fromisoformat(data["since"]),
            command=data["command"],
            started_at=datetime.fromisoformat(started) if started else None,
            host=data.get("host"),
            heartbeat_at=datetime.fromisoformat(beat) if beat else None,
            progress=data.get("progress") if isinstance(data.get("progress"), Mapping) else None,
        )
