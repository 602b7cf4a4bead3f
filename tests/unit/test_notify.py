"""sd_notify without libsystemd: a real datagram socket stands in for systemd's (no child process)."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

from djctl.daemon.systemd.notify import Notifier, start_watchdog
from tests.support.notify import DEADLINE, Listener


class RecordingEvent(threading.Event):
    """A real Event that remembers how long each wait() was asked to last."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        return super().wait(timeout)


def test_messages_reach_the_socket(listener: Listener) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": listener.address})
    assert notifier.enabled
    assert notifier.ready("worker=2")
    assert listener.receive() == "READY=1\nSTATUS=worker=2"
    notifier.status("worker=3 mail=1")
    assert listener.receive() == "STATUS=worker=3 mail=1"
    notifier.watchdog()
    assert listener.receive() == "WATCHDOG=1"
    notifier.stopping()
    assert listener.receive() == "STOPPING=1"
    notifier.ready()
    assert listener.receive() == "READY=1"


def test_a_status_stays_one_field(listener: Listener) -> None:
    Notifier.from_environ({"NOTIFY_SOCKET": listener.address}).status("worker=2\nREADY=1")
    assert listener.receive() == "STATUS=worker=2 READY=1"


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready("worker=1") is False
    assert notifier.watchdog_interval() is None
    assert start_watchdog(notifier, threading.Event()) is None


@pytest.mark.parametrize("value", ["", "relative/notify.sock", "vsock:2:1234"])
def test_unusable_addresses_disable_notifications(value: str) -> None:
    assert not Notifier.from_environ({"NOTIFY_SOCKET": value}).enabled


def test_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    gone = Listener(str(tmp_path / "gone.sock"))
    gone.close()
    for address in (gone.address, f"@djctl-nobody-{uuid.uuid4().hex}"):
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": address})
        assert notifier.enabled
        assert notifier.ready("worker=1") is False
        assert notifier.stopping() is False


def test_a_receiver_that_stops_reading_never_blocks_the_sender(listener: Listener) -> None:
    """Its queue full, the messages that do not fit are dropped: the supervisor's loop,
    which sends STATUS, must not wait for systemd (or anyone) to read."""
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": listener.address})
    sent: list[bool] = []
    sender = threading.Thread(target=lambda: sent.extend(notifier.status(f"s{i}") for i in range(1000)))
    sender.start()
    sender.join(DEADLINE)
    assert not sender.is_alive(), "a send blocked on the full queue"
    assert sent[0] and not sent[-1]
    assert listener.pending()[0] == "STATUS=s0"


def test_unset_keeps_the_socket_from_children(listener: Listener) -> None:
    environ = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "1000000", "PATH": "/bin"}
    notifier = Notifier.from_environ(environ, unset=True)
    assert environ == {"PATH": "/bin"}
    assert notifier.watchdog_interval() == 1.0
    notifier.ready()
    assert listener.receive() == "READY=1"


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("30000000", "self", 30.0),
        ("30000000", "other", None),
        ("30000000", "garbage", None),
        ("0", None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval(listener: Listener, usec: str, pid: str | None, expected: float | None) -> None:
    environ = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": usec}
    if pid is not None:
        environ["WATCHDOG_PID"] = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(pid, pid)
    assert Notifier.from_environ(environ).watchdog_interval() == expected


def test_watchdog_thread_pings_at_half_the_interval(listener: Listener) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000"})
    stop = RecordingEvent()
    thread = start_watchdog(notifier, stop)
    assert thread is not None and thread.daemon
    try:
        assert [listener.receive() for _ in range(3)] == ["WATCHDOG=1"] * 3
    finally:
        stop.set()
        thread.join(DEADLINE)
    assert not thread.is_alive()
    assert stop.timeouts and set(stop.timeouts) == {0.1}


def test_watchdog_is_withheld_while_the_supervisor_is_stuck(listener: Listener) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "20000"})
    asked = threading.Semaphore(0)

    def stuck() -> bool:
        asked.release()
        return False

    stop = threading.Event()
    thread = start_watchdog(notifier, stop, is_alive=stuck)
    assert thread is not None
    for _ in range(3):
        assert asked.acquire(timeout=DEADLINE)
    stop.set()
    thread.join(DEADLINE)
    assert listener.pending() == []
