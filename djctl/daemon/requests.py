"""The control requests a running supervisor answers (``ps``, ``scale``, ``restart``,
``stop``), run in the supervisor's loop: each checks what it was given, acts through the
Manager, and returns what the client prints. Bad requests raise ControlError."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from djctl.daemon import render
from djctl.daemon.control import ControlError
from djctl.daemon.formation import (
    FormationStore,
    ProcfileError,
    ScaleError,
    StateFileError,
    format_formation,
    load_process_types,
    parse_scale,
)
from djctl.daemon.logs import SUPERVISOR
from djctl.daemon.manager import Manager
from djctl.daemon.printer import Printer

Handler = Callable[[dict], dict]


class Requests:
    def __init__(self, manager: Manager, store: FormationStore, printer: Printer, *, host: str, cwd: Path,
                 grace_period: float, type_names: list[str], stop: Callable[[str], None]) -> None:
        self.manager, self.store, self.printer = manager, store, printer
        self.host, self.cwd, self.grace_period = host, cwd, grace_period
        self._type_names = type_names  # the spawner's list of known types, extended in place
        self._stop = stop
        self.handlers: dict[str, Handler] = {"ps": self.ps, "scale": self.scale, "restart": self.restart,
                                             "stop": self.stop}

    def ps(self, _request: dict) -> dict:
        return {
            "processes": [p.as_dict() for p in self.manager.processes()],
            "formation": dict(self.manager.formation),
            "types": dict(self.manager.types),
            "restarting": self.manager.restarting,
            "bounced": self.manager.bounced(),
            "supervisor": {"pid": os.getpid(), "host": self.host, "stopping": self.manager.stopping},
        }

    def scale(self, request: dict) -> dict:
        if self.manager.stopping:
            raise ControlError("the supervisor is stopping; scale after djctl up")
        args = request.get("args")
        if args is None and isinstance(request.get("formation"), dict):
            args = [f"{k}={v}" for k, v in request["formation"].items()]
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ControlError('scale takes "args": ["worker=2", ...] or "formation": {...}', usage=True)
        try:
            formation = parse_scale(args, self.manager.formation, list(self.manager.types))
        except ScaleError as e:
            raise ControlError(str(e), usage=True) from None
        try:
            self.store.update(formation)
        except OSError as e:
            raise ControlError(f"cannot save the formation in {self.store.path}: {e.strerror}") from None
        self.printer.event(SUPERVISOR, f"Scaling to {format_formation(formation)}")
        changed = self.manager.scale(formation)
        return {"formation": formation, "changed": changed}

    def restart(self, request: dict) -> dict:
        target = request.get("target")
        if target is not None and not isinstance(target, str):
            raise ControlError('restart takes "target": a type, a process name or null', usage=True)
        if self.manager.stopping:
            raise ControlError("the supervisor is stopping")
        old = dict(self.manager.types)
        changes = self._reread_procfile()
        added = {name: count for name, count in self._saved().items() if name in self.manager.types
                 and name not in old and count > 0}
        try:
            names = self.manager.restart(target)
        except ValueError as e:
            if target not in added:
                raise ControlError(str(e), usage=True) from None
            names = []
        if added:
            # Started after the restart is queued, so that they do not start twice.
            self.manager.scale({**self.manager.formation, **added})
        return {"restarting": names, "procfile": changes}

    def _reread_procfile(self) -> list[str]:
        """Take up the Procfile as it is now, so that restarted processes run its commands;
        returns what changed, in words (nothing: [])."""
        try:
            types = load_process_types(self.cwd)
        except ProcfileError as e:
            raise ControlError(f"{e}; nothing restarted") from None
        changes = render.procfile_changes(self.manager.types, types)
        if changes:
            self.manager.retype(types)
            self._type_names.extend(name for name in types if name not in self._type_names)
            self.printer.event(SUPERVISOR, "Procfile re-read: " + "; ".join(changes))
        return changes

    def _saved(self) -> dict[str, int]:
        try:
            return self.store.load() or {}
        except StateFileError:
            return {}

    def stop(self, _request: dict) -> dict:
        self._stop("djctl down")
        return {"stopping": True, "pid": os.getpid(), "grace_period": self.grace_period}

