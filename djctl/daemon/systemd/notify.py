"""sd_notify spoken directly over NOTIFY_SOCKET, without libsystemd.

Under a `Type=notify` unit systemd passes the address of a datagram socket in
NOTIFY_SOCKET (a path, or `@name` for the abstract namespace). The supervisor sends
READY=1 once its formation is up, STATUS= lines, WATCHDOG=1 pings and STOPPING=1.
Outside systemd every call is a no-op. Sending is best effort and never raises:
losing a status line must not take the supervisor down.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, MutableMapping

NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """One service's channel to systemd; `enabled` only when NOTIFY_SOCKET is usable."""

    def __init__(
        self,
        address: str | None,
        watchdog_usec: str | None = None,
        watchdog_pid: str | None = None,
        pid: int | None = None,
    ) -> None:
        """`address` is NOTIFY_SOCKET's value; the rest mirror WATCHDOG_USEC/WATCHDOG_PID.

        `pid` is this process's pid (os.getpid() by default), compared with
        WATCHDOG_PID to tell whether the watchdog is meant for us.
        """
        self._address = _socket_address(address)
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid
        self._pid = os.getpid() if pid is None else pid

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str] | None = None, unset: bool = False
    ) -> Notifier:
        """Build from `environ` (os.environ by default).

        With `unset`, the variables are removed from `environ` so that processes
        forked later (the workers) do not inherit a socket that is not theirs.
        """
        environ = os.environ if environ is None else environ
        address, watchdog_usec, watchdog_pid = (environ.get(name) for name in NOTIFY_VARIABLES)
        if unset:
            for name in NOTIFY_VARIABLES:
                environ.pop(name, None)
        return cls(address, watchdog_usec, watchdog_pid)

    @property
    def enabled(self) -> bool:
        """True when NOTIFY_SOCKET named a socket address djctl can speak to."""
        return self._address is not None

    def send(self, text: str) -> bool:
        """Send one datagram of newline-separated `KEY=value` lines; True if it went out."""
        if self._address is None:
            return False
        try:
            # A fresh socket per message, as libsystemd does: nothing to share between
            # threads, nothing stale after systemd restarts its end.
            # Non-blocking: a receiver that stops reading (its queue full) loses the
            # message rather than stalling the supervisor's loop.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(text.encode("utf-8"), socket.MSG_DONTWAIT, self._address)
        except OSError:
            return False
        return True

    def notify(self, **fields: object) -> bool:
        """Send `KEY=value` for each field, e.g. notify(ready=1, status="worker=2")."""
        lines = []
        for key, value in fields.items():
            # STATUS text is one line in the protocol; a newline would start a new field.
            lines.append(f"{key.upper()}={str(value).replace(chr(10), ' ')}")
        return self.send("\n".join(lines))

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (startup finished), with a STATUS= line when given."""
        return self.notify(ready=1) if status is None else self.notify(ready=1, status=status)

    def status(self, text: str) -> bool:
        """STATUS=text, shown by `systemctl status`."""
        return self.notify(status=text)

    def stopping(self) -> bool:
        """STOPPING=1: shutdown has begun."""
        return self.notify(stopping=1)

    def watchdog(self) -> bool:
        """WATCHDOG=1: the service is alive."""
        return self.notify(watchdog=1)

    def watchdog_interval(self) -> float | None:
        """The unit's WatchdogSec in seconds, or None when no watchdog is asked of us.

        None when NOTIFY_SOCKET or WATCHDOG_USEC is unset or invalid, or when
        WATCHDOG_PID names another process. Ping at half this interval.
        """
        if self._address is None or self._watchdog_usec is None:
            return None
        if self._watchdog_pid is not None:
            try:
                if int(self._watchdog_pid) != self._pid:
                    return None
            except ValueError:
                return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        return usec / 1_000_000 if usec > 0 else None


def start_watchdog(
    notifier: Notifier,
    stop_event: threading.Event,
    is_alive: Callable[[], bool] | None = None,
) -> threading.Thread | None:
    """Start a daemon thread sending WATCHDOG=1 every half interval until `stop_event` is set.

    Returns None (and starts nothing) when no watchdog is asked of us. `is_alive`,
    when given, is asked before each ping: if the supervisor's loop is stuck it
    returns False, the ping is skipped and systemd restarts the service, which is
    the point of a watchdog.
    """
    interval = notifier.watchdog_interval()
    if interval is None:
        return None
    period = interval / 2

    def ping() -> None:
        while True:
            if is_alive is None or is_alive():
                notifier.watchdog()
            if stop_event.wait(period):
                return

    thread = threading.Thread(target=ping, name="djctl-watchdog", daemon=True)
    thread.start()
    return thread


def _socket_address(value: str | None) -> str | None:
    """NOTIFY_SOCKET as a sendto() address; None for unset or unsupported (e.g. vsock:)."""
    if not value:
        return None
    if value.startswith("@"):
        # The abstract namespace: a leading NUL byte instead of the "@".
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None

