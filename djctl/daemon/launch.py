"""Starting a supervisor: in this process (``--foreground``) or as a daemon
(python-daemon) that reports back to ``djctl up`` once its formation is up.

:func:`run_supervisor` is the supervisor's whole life: take the pid file, open the
log and the database, run, release everything. :func:`start_daemon` forks, detaches
the child (umask 0o077, working directory kept, stdio on /dev/null) and waits on a
pipe for one JSON line saying how the start went.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Callable
from typing import TextIO

from djctl import api
from djctl.daemon.formation import FormationStore
from djctl.daemon.logs import LogWriter
from djctl.daemon.model import ProcessInfo
from djctl.daemon.pidfile import AlreadyRunning, PidFile
from djctl.daemon.printer import Printer
from djctl.daemon.registry import Registry
from djctl.daemon.supervisor import Plan, Supervisor
from djctl.daemon.systemd.notify import Notifier
from djctl.errors import one_line as _one_line


class LaunchError(Exception):
    """The supervisor did not come up; the message is one line."""


Ready = Callable[[list[ProcessInfo]], None]


def run_supervisor(plan: Plan, on_started: Callable[[int], None], on_ready: Ready,
                   echo: TextIO | None = None) -> None:
    """Run a supervisor for ``plan`` in this process until it is stopped. Raises
    AlreadyRunning or PidFileError before anything starts when the pid file is taken
    or corrupt; ``on_started(pid)`` follows taking it, ``on_ready`` the formation's start."""
    s = plan.settings
    pidfile = PidFile(plan.paths.pid)
    pidfile.acquire()
    log = events = None
    try:
        on_started(os.getpid())
        # Only the supervisor speaks to systemd; its children must not inherit the socket.
        notifier = Notifier.from_environ(unset=True)
        log = LogWriter(plan.paths.log, s.log_max_bytes, s.log_backups, fmt=s.log_format)
        events = LogWriter(plan.paths.events, s.log_max_bytes, s.log_backups)
        store = FormationStore(plan.paths.formation)
        store.update(plan.formation)
        registry = Registry(api.engine(s.database_url), plan.host, os.getpid(), s.max_attempts)
        Supervisor(plan, Printer(log, echo, events), store, registry, notifier).run(on_ready)
    finally:
        pidfile.release()
        for writer in (log, events):
            if writer is not None:
                writer.close()


def start_daemon(plan: Plan, timeout: float = 120.0) -> tuple[int, list[ProcessInfo]]:
    """Start the supervisor as a daemon and return (its pid, its processes) once the
    formation is up. Raises AlreadyRunning, or LaunchError when it failed or did not
    report within ``timeout`` seconds. Call with no database connection open: the
    daemon closes every inherited descriptor."""
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the daemon, measured through the CLI tests
        os.close(read_fd)
        _daemon_main(plan, write_fd)
    os.close(write_fd)
    try:
        os.waitpid(child, 0)  # python-daemon's first fork exits at once
        return _await(read_fd, timeout)
    finally:
        os.close(read_fd)


def _daemon_main(plan: Plan, write_fd: int) -> None:
    import daemon

    code = 1
    report = _Reporter(write_fd)
    try:
        context = daemon.DaemonContext(
            working_directory=str(plan.cwd),
            # python-daemon's default umask is 0: every file would be world-writable.
            umask=0o077,
            detach_process=True,
            files_preserve=[write_fd],
            # SIGTERM is the supervisor's own to handle (graceful stop).
            signal_map={signal.SIGTSTP: None, signal.SIGTTIN: None, signal.SIGTTOU: None},
        )
        try:
            context.open()
            run_supervisor(plan, lambda pid: report.send({"started": pid}),
                           lambda processes: report.send({"ready": os.getpid(),
                                                          "processes": [p.as_dict() for p in processes]},
                                                         last=True))
            code = 0
        except AlreadyRunning as e:
            report.send({"already": e.pid}, last=True)
        except BaseException as e:  # noqa: BLE001 - reported to djctl up, then the daemon ends
            report.send({"error": _one_line(e)}, last=True)
    finally:
        os._exit(code)


class _Reporter:
    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def send(self, message: dict, last: bool = False) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, (json.dumps(message) + "\n").encode())
        except OSError:
            pass  # djctl up is gone (interrupted); the supervisor runs on regardless
        if last:
            os.close(self.fd)
            self.fd = None


def _await(fd: int, timeout: float) -> tuple[int, list[ProcessInfo]]:
    deadline = time.monotonic() + timeout
    buffer = b""
    pid: int | None = None
    while True:
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if "started" in message:
                pid = message["started"]
            elif "ready" in message:
                return message["ready"], [ProcessInfo.from_dict(p) for p in message["processes"]]
            elif "already" in message:
                raise AlreadyRunning(message["already"])
            else:
                raise LaunchError(f"the supervisor failed to start: {message.get('error')}")
        left = deadline - time.monotonic()
        if left <= 0:
            who = f" (pid {pid})" if pid else ""
            raise LaunchError(f"the supervisor{who} is not up after {timeout:g}s; see djctl ps and djctl logs")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise LaunchError("the supervisor exited while starting; see djctl logs")
            buffer += chunk
