"""The control socket refuses other users: forked children as uid 65534 (needs root)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from djctl.daemon.control import Client, ControlError, Server
from djctl.daemon.paths import Paths, ensure_private_dir
from tests.support.control import echo_handler, serve
from tests.support.users import OTHER_UID, as_other_user


@pytest.fixture
def server(tmp_path):
    yield from serve(tmp_path)


@pytest.fixture
def reachable(tmp_path):
    """A directory another user can traverse (pytest's own tmp dirs are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="djctl-control-", dir="/tmp"))
    os.chmod(base, 0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_other_users_cannot_reach_the_socket(server):
    out = as_other_user(lambda: Client(server.path.parent).request("ps") and "answered")
    assert out.startswith("ControlError: permission denied") or out.startswith("NotRunning") or "Permission" in out
    assert "answered" not in out


def test_server_refuses_other_uids_even_when_the_file_is_opened_up(reachable):
    refused: list[tuple[int, int]] = []
    server = Server(Paths(ensure_private_dir(reachable / "state")), echo_handler,
                    on_refused=lambda pid, uid: refused.append((pid, uid)))
    server.start()
    # Simulate a careless chmod: the file system lets anyone in; SO_PEERCRED must not.
    os.chmod(reachable / "state", 0o711)
    os.chmod(server.path, 0o666)

    def raw() -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(server.path))
            s.sendall(b'{"cmd": "ps"}\n')  # the server reads it before refusing: no EPIPE here
            return s.makefile("rb").readline().decode()

    try:
        # Every time: the refusal must not race the client's request (a unix socket
        # closed with the request unread resets the connection, losing the answer).
        replies = [as_other_user(raw) for _ in range(100)]
    finally:
        server.close()
    assert set(replies) == {json.dumps({"ok": False, "error": f"permission denied: uid {OTHER_UID} does not own "
                                                              "this supervisor"}, separators=(",", ":")) + "\n"}
    assert {uid for _pid, uid in refused} == {OTHER_UID} and len(refused) == 100


def test_client_refuses_a_server_run_by_another_user(reachable):
    state = reachable / "state"
    state.mkdir(mode=0o777)
    os.chmod(state, 0o777)
    path = Paths(state).socket
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # an impostor supervisor under another uid, serving our path
        try:
            os.setgroups([])
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            s = socket.socket(socket.AF_UNIX)
            s.bind(str(path))
            s.listen(1)
            os.write(w, b"!")
            conn, _ = s.accept()
            conn.recv(100)
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"!"
    os.close(r)
    try:
        os.chown(path, 0, 0, follow_symlinks=False)  # even a file that looks like ours
        with pytest.raises(ControlError, match=f"served by uid {OTHER_UID}, not you"):
            Client(state).request("ps")
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
