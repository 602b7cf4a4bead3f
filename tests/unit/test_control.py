"""The control socket: JSON lines over a real unix socket, open to its owner only."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import threading
from pathlib import Path

import pytest

from djctl.daemon.control import Client, ControlError, NotRunning, Server
from djctl.daemon.paths import Paths, ensure_private_dir

OTHER_UID = 65534  # nobody


def echo_handler(request: dict) -> dict:
    if request["cmd"] == "boom":
        raise ControlError("no such thing", usage=True)
    if request["cmd"] == "crash":
        raise RuntimeError("bug")
    return {"echo": request}


@pytest.fixture
def server(tmp_path):
    paths = Paths(ensure_private_dir(tmp_path / "state"))
    refused: list[tuple[int, int]] = []
    srv = Server(paths, echo_handler, on_refused=lambda pid, uid: refused.append((pid, uid)))
    srv.start()
    srv.refused = refused
    yield srv
    srv.close()


@pytest.fixture
def reachable(tmp_path):
    """A directory another user can traverse (pytest's own tmp dirs are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="djctl-control-", dir="/tmp"))
    os.chmod(base, 0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def as_other_user(fn) -> str:
    """Run ``fn`` in a forked child as uid/gid 65534; return what it returned (a string)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - reported to the parent
                result = f"{type(e).__name__}: {e}"
            os.write(w, result.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def test_socket_is_owner_only_in_an_owner_only_directory(server, tmp_path):
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    st = os.stat(server.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


def test_request_and_reply(server, tmp_path):
    reply = Client(tmp_path / "state").request("ps", extra=[1, 2])
    assert reply == {"echo": {"cmd": "ps", "extra": [1, 2]}}


def test_errors_come_back_as_control_errors(server, tmp_path):
    client = Client(tmp_path / "state")
    with pytest.raises(ControlError, match="no such thing") as e:
        client.request("boom")
    assert e.value.usage
    with pytest.raises(ControlError, match="internal error: RuntimeError: bug") as e:
        client.request("crash")
    assert not e.value.usage
    assert client.request("ps")  # the server survived both


def test_malformed_requests_get_one_line_errors(server):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(server.path))
        s.sendall(b"not json\n[1]\n")
        f = s.makefile("rb")
        assert json.loads(f.readline()) == {"ok": False, "error": "a request is one JSON object per line", "usage": True}
        assert json.loads(f.readline())["error"] == 'a request is a JSON object with a "cmd"'


def test_not_running_when_nobody_listens(tmp_path):
    with pytest.raises(NotRunning):
        Client(tmp_path).request("ps")
    # A socket file left behind by a dead supervisor.
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(Paths(tmp_path).socket))
    s.close()
    with pytest.raises(NotRunning):
        Client(tmp_path).request("ps")


def test_a_path_longer_than_af_unix_allows_still_works(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    paths = Paths(ensure_private_dir(deep))
    srv = Server(paths, echo_handler)
    srv.start()
    try:
        assert len(str(paths.socket)) > 108
        assert Client(deep).request("ps") == {"echo": {"cmd": "ps"}}
    finally:
        srv.close()
    assert not paths.socket.exists()


def test_many_clients_at_once(server, tmp_path):
    results = []

    def ask(i: int) -> None:
        results.append(Client(tmp_path / "state").request("ps", i=i)["echo"]["i"])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(20))


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


def test_client_refuses_a_socket_owned_by_another_user(server, tmp_path):
    os.chown(server.path, OTHER_UID, OTHER_UID, follow_symlinks=False)
    with pytest.raises(ControlError, match=f"owned by uid {OTHER_UID}, not you; refusing"):
        Client(tmp_path / "state").request("ps")


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


def test_state_dir_of_another_user_is_refused_and_a_wide_one_narrowed(tmp_path):
    from djctl.daemon.paths import StateDirError

    wide = tmp_path / "wide"
    wide.mkdir(mode=0o755)
    os.chmod(wide, 0o755)
    ensure_private_dir(wide)
    assert stat.S_IMODE(os.stat(wide).st_mode) == 0o700
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, OTHER_UID, OTHER_UID)
    with pytest.raises(StateDirError, match=f"belongs to uid {OTHER_UID}"):
        ensure_private_dir(theirs)
    assert isinstance(Path(theirs), Path)
