"""The control socket: JSON lines over a real unix socket, open to its owner only (in one process)."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from djctl.daemon.control import Client, ControlError, NotRunning, Server
from djctl.daemon.paths import Paths, ensure_private_dir
from tests.support.control import echo_handler, serve
from tests.support.users import OTHER_UID


@pytest.fixture
def server(tmp_path):
    yield from serve(tmp_path)


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
        assert json.loads(f.readline()) == {"ok": False, "error": "a request is one JSON object per line",
                                            "usage": True}
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


def test_client_refuses_a_socket_owned_by_another_user(server, tmp_path):
    os.chown(server.path, OTHER_UID, OTHER_UID, follow_symlinks=False)
    with pytest.raises(ControlError, match=f"owned by uid {OTHER_UID}, not you; refusing"):
        Client(tmp_path / "state").request("ps")


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


def test_state_dirs_made_with_their_parents_are_all_owner_only(tmp_path):
    os.chmod(tmp_path, 0o755)
    ensure_private_dir(tmp_path / ".djctl" / "demo")
    for made in (tmp_path / ".djctl", tmp_path / ".djctl" / "demo"):
        assert stat.S_IMODE(os.stat(made).st_mode) == 0o700, made
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o755  # what was there is left alone
