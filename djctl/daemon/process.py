"""One real child of the supervisor: ``sh -c 'exec <command>'`` in the application's
directory, in a process group of its own, its stdout and stderr on one pipe, and a
second pipe (fd ``$DJCTL_EVENT_FD``) on which it may report job outcomes.

The child asks the kernel for SIGTERM when the supervisor dies (PR_SET_PDEATHSIG), so
a supervisor killed with SIGKILL leaves no orphans: each worker stops as it does on
SIGTERM, finishing the job in hand. Signals go to the whole group, so whatever the
command started stops with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from djctl.daemon.manager import SpawnRequest
from djctl.worker import descendants

PR_SET_PDEATHSIG = 1
EVENT_FD_VAR = "DJCTL_EVENT_FD"
"""The variable naming the inherited fd on which a process reports job outcomes, one
JSON object a line (see :mod:`djctl.daemon.logs.events`)."""
BASE_PORT = 5000
_MAX_LINE = 64 * 1024

try:
    _prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: the workers' own signal handling must do
    _prctl = None


def shell_command(command: str, python: str = sys.executable) -> str:
    """The shell text that runs a Procfile ``command``: ``exec`` so the command itself
    is our child (and gets our signals), and a leading ``djctl`` run with this very
    interpreter, so a virtualenv works without being on PATH."""
    if command == "djctl" or command.startswith(("djctl ", "djctl\t")):
        command = f"{shlex.quote(python)} -m djctl{command[5:]}"
    return f"exec {command}"


def process_env(base: Mapping[str, str], request: SpawnRequest, type_index: int) -> dict[str, str]:
    """The environment of one process: ``base`` plus what Heroku and foreman set:
    DYNO and PS (``worker.1``), PORT (5000 + 100 per type + index - 1); Python output
    unbuffered so each line reaches the log as it is written."""
    env = dict(base)
    env["DYNO"] = request.name
    env["PS"] = request.name
    env["PORT"] = str(BASE_PORT + 100 * type_index + request.index - 1)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class ChildProcess:
    """A started child. ``pid`` is also its process group id. ``events`` is the read
    end of its event pipe (:data:`EVENT_FD_VAR`), a :class:`LineReader` for select."""

    def __init__(self, popen: subprocess.Popen, name: str, events: int | None = None) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.name = name
        assert popen.stdout is not None
        self._out = popen.stdout.fileno()
        os.set_blocking(self._out, False)
        self._partial = b""
        self.returncode: int | None = None
        self.events = LineReader(events) if events is not None else None

    def fileno(self) -> int:
        """The read end of the child's output (for select); -1 once closed."""
        return self._out

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child's process group (the child alone if it has left
        it); a child already gone is not an error."""
        if self.returncode is not None:
            return
        if sig == signal.SIGKILL:
            # A job's children may have left the group (a new session, a double fork);
            # the executor keeps them in its tree (djctl.worker.descendants), so the tree
            # goes first, the group stopped meanwhile so that nothing in it forks.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGSTOP)
            descendants.kill_descendants(self.pid)
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
        except PermissionError:
            pass

    def read_lines(self) -> list[str] | None:
        """Complete lines available now (without newlines), split on ``\\n`` alone; None
        at end of output. A line longer than 64 KiB, finished or not, is cut into 64 KiB
        pieces, so a process that never writes a newline still reaches the log."""
        data, eof = _drain(self._out)
        parts = (self._partial + data).split(b"\n")
        self._partial = parts.pop()
        if eof and self._partial:
            parts.append(self._partial)
            self._partial = b""
        # CRLF ends a line like LF does; any other \r is escaped by the printer.
        pieces = [piece for part in parts for piece in _cut(part.removesuffix(b"\r"))]
        while len(self._partial) >= _MAX_LINE:
            pieces.append(self._partial[:_MAX_LINE])
            self._partial = self._partial[_MAX_LINE:]
        lines = [p.decode("utf-8", "replace") for p in pieces]
        if eof:
            return lines or None
        return lines

    def has_exited(self) -> bool:
        """True when the child has exited; it is left a zombie (see :meth:`reap`), so
        its pid, and with it the process group id, cannot be reused meanwhile."""
        if self.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def reap(self) -> int:
        """Kill whatever the child left behind in its group, collect its exit status
        (negative: the signal that ended it) and close the output pipe."""
        if self.returncode is None:
            self.signal(signal.SIGKILL)
            self.returncode = self.popen.wait()
        return self.returncode

    def close(self) -> None:
        """Close the output pipe (the event pipe is closed through :attr:`events`)."""
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._out = -1


class LineReader:
    """The non-blocking read end of a pipe that carries lines (a child's event pipe)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        os.set_blocking(fd, False)
        self._partial = b""

    def fileno(self) -> int:
        """The pipe's read end (for select); -1 once closed."""
        return self._fd

    def read_lines(self) -> list[str] | None:
        """Complete lines available now; None at end of the pipe. A line longer than
        64 KiB is dropped whole: no event is that long, and a piece of one is not one."""
        data, eof = _drain(self._fd)
        parts = (self._partial + data).split(b"\n")
        self._partial = parts.pop()
        if len(self._partial) > _MAX_LINE:
            self._partial = b"\x00"  # poisoned: the rest of this line is dropped too
        lines = [p.decode("utf-8", "replace") for p in parts if p and len(p) <= _MAX_LINE]
        return None if eof and not lines else lines

    def close(self) -> None:
        """Close the pipe; idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _drain(fd: int) -> tuple[bytes, bool]:
    """Everything readable now on ``fd``, and whether its writers are all gone."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return b"".join(chunks), False
        except OSError:
            chunk = b""
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


def _cut(line: bytes) -> list[bytes]:
    if len(line) <= _MAX_LINE:
        return [line]
    return [line[i:i + _MAX_LINE] for i in range(0, len(line), _MAX_LINE)]


def spawner(
    cwd: Path,
    base_env: Mapping[str, str],
    types: list[str],
    python: str = sys.executable,
    umask: int | None = None,
) -> Callable[[SpawnRequest], ChildProcess]:
    """The real ``spawn`` for :class:`~djctl.daemon.manager.Manager`; each process
    gets ``umask`` (None: the supervisor's). Must be called from the supervisor's main
    thread: the kernel's parent-death signal follows the thread that forked."""
    supervisor = os.getpid()

    def before_exec() -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The supervisor may have died between fork and prctl: then no signal will come.
        if os.getppid() != supervisor:
            os._exit(1)

    def spawn(request: SpawnRequest) -> ChildProcess:
        index = types.index(request.type) if request.type in types else 0
        events_r, events_w = os.pipe2(os.O_CLOEXEC)
        try:
            env = process_env(base_env, request, index)
            env[EVENT_FD_VAR] = str(events_w)
            popen = subprocess.Popen(
                ["/bin/sh", "-c", shell_command(request.command, python)],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=before_exec,
                close_fds=True,
                pass_fds=(events_w,),
                umask=-1 if umask is None else umask,
            )
        except BaseException:
            os.close(events_r)
            raise
        finally:
            # Only the child may hold the write end: the pipe ends when the child does.
            os.close(events_w)
        return ChildProcess(popen, request.name, events_r)

    return spawn
