"""sd_notify from a real service process: a datagram socket stands in for systemd's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from tests.support.notify import DEADLINE, Listener

CHILD = textwrap.dedent(
    """
    import signal, sys, threading
    from djctl.daemon.systemd.notify import Notifier, start_watchdog

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    notifier = Notifier.from_environ(unset=True)
    start_watchdog(notifier, stop)
    notifier.ready("worker=1")
    stop.wait()
    notifier.stopping()
    """
)


def test_a_service_process_speaks_to_systemd(listener: Listener) -> None:
    """What systemd sees from a Type=notify main process: its pid on every message."""
    env = {**os.environ, "NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "100000"}
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env)
    try:
        seen: list[str] = []
        while "READY=1\nSTATUS=worker=1" not in seen or "WATCHDOG=1" not in seen:
            message, pid = listener.receive_with_pid()
            assert pid == child.pid
            seen.append(message)
        child.send_signal(signal.SIGTERM)
        while (message := listener.receive()) == "WATCHDOG=1":
            pass
        assert message == "STOPPING=1"
        assert child.wait(DEADLINE) == 0
    finally:
        child.kill()
        child.wait()
