"""The control channel between ``djctl`` commands (and the console) and the supervisor.

A unix stream socket, ``<state_dir>/control.sock``, mode 0600 in a 0700 directory,
carrying one JSON object per line each way: a request ``{"cmd": "ps", ...}`` and its
reply ``{"ok": true, ...}`` or ``{"ok": false, "error": "...", "usage": bool}``.
Both ends check who is at the other end with SO_PEERCRED: the server answers only
its own user, and the client talks only to a socket, and a server, of its own user.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from djctl.daemon.paths import Paths

_MAX_REQUEST = 1024 * 1024
# AF_UNIX paths are limited to 108 bytes; longer ones are reached through /proc.
_MAX_PATH = 100

Handler = Callable[[dict], dict]


class NotRunning(Exception):
    """No supervisor answers on the control socket."""


class ControlError(Exception):
    """The supervisor refused or failed a request (``usage``: the request was wrong),
    or the socket is not one to trust. The message is one line."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected unix socket."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", data)


class _Address:
    """A socket path usable with bind/connect even when it is longer than AF_UNIX allows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._dir_fd: int | None = None

    def __enter__(self) -> str:
        text = str(self.path)
        if len(text.encode()) <= _MAX_PATH:
            return text
        self._dir_fd = os.open(self.path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return f"/proc/self/fd/{self._dir_fd}/{self.path.name}"

    def __exit__(self, *exc: object) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None


class Server:
    """Listens on the control socket and answers each request with ``handler(request)``.

    ``handler`` runs on the connection's thread and returns the reply's fields; it
    raises ControlError for a request it refuses. Connections from another uid are
    answered with an error and closed; ``on_refused(pid, uid)`` hears of them.
    """

    def __init__(
        self,
        paths: Paths,
        handler: Handler,
        on_refused: Callable[[int, int], None] | None = None,
    ) -> None:
        self.path = paths.socket
        self._handler = handler
        self._on_refused = on_refused
        self._uid = os.getuid()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        with _Address(self.path) as address:
            self._sock.bind(address)
        os.chmod(self.path, 0o600)
        self._sock.listen(128)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="djctl-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop listening and remove the socket file. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        self._thread.join(timeout=2)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="djctl-control-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            pid, uid, _gid = peer_credentials(conn)
            if uid != self._uid:
                if self._on_refused is not None:
                    self._on_refused(pid, uid)
                try:
                    # Read its request first: a unix socket closed with unread data resets
                    # the connection, and the client would lose the answer.
                    conn.settimeout(1.0)
                    conn.makefile("rb").readline(_MAX_REQUEST)
                    _send(conn, {"ok": False, "error": f"permission denied: uid {uid} does not own this supervisor"})
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            reader = conn.makefile("rb")
            while not self._closed.is_set():
                line = reader.readline(_MAX_REQUEST)
                if not line:
                    return
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                        raise ControlError('a request is a JSON object with a "cmd"', usage=True)
                    reply = {"ok": True, **self._handler(request)}
                except ControlError as e:
                    reply = {"ok": False, "error": str(e), "usage": e.usage}
                except ValueError:
                    reply = {"ok": False, "error": "a request is one JSON object per line", "usage": True}
                except Exception as e:  # noqa: BLE001 - one bad request must not take the server down
                    reply = {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"}
                try:
                    _send(conn, reply)
                except OSError:
                    return


class Client:
    """Talks to the supervisor of ``state_dir``. One connection per request."""

    def __init__(self, state_dir: Path, timeout: float = 30.0) -> None:
        self.path = Paths(Path(state_dir)).socket
        self.timeout = timeout

    def request(self, cmd: str, **args: Any) -> dict:
        """Send one request and return the reply's fields. Raises NotRunning when no
        supervisor answers, ControlError when it refuses the request or when the
        socket or its server belongs to another user."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            raise NotRunning(f"no supervisor is listening on {self.path}") from None
        if st.st_uid != os.getuid():
            raise ControlError(
                f"control socket {self.path} is owned by uid {st.st_uid}, not you; refusing to use it"
            )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(self.timeout)
        with sock:
            try:
                self._connect(sock)
            except (FileNotFoundError, ConnectionRefusedError):
                raise NotRunning(f"no supervisor is listening on {self.path}") from None
            except PermissionError:
                raise ControlError(f"permission denied on control socket {self.path}") from None
            _pid, uid, _gid = peer_credentials(sock)
            if uid != os.getuid():
                raise ControlError(f"control socket {self.path} is served by uid {uid}, not you; refusing it")
            try:
                try:
                    _send(sock, {"cmd": cmd, **args})
                except BrokenPipeError:
                    pass  # refused at once: its reason is waiting to be read
                line = sock.makefile("rb").readline(_MAX_REQUEST)
            except TimeoutError:
                raise ControlError(f"the supervisor did not answer {cmd!r} within {self.timeout:g}s") from None
            except ConnectionResetError:
                line = b""
        if not line:
            raise NotRunning("the supervisor closed the connection without answering")
        reply = json.loads(line)
        if not reply.pop("ok", False):
            raise ControlError(reply.get("error") or "request failed", usage=bool(reply.get("usage")))
        return reply

    def _connect(self, sock: socket.socket) -> None:
        deadline = time.monotonic() + self.timeout
        with _Address(self.path) as address:
            while True:
                try:
                    sock.connect(address)
                    return
                except BlockingIOError:
                    # The server's backlog is full (a burst of clients): wait for a place.
                    if time.monotonic() >= deadline:
                        raise ControlError(f"the supervisor is not accepting connections on {self.path}") from None
                    time.sleep(0.01)


def _send(sock: socket.socket, message: dict) -> None:
    sock.sendall((json.dumps(message, separators=(",", ":")) + "\n").encode())
