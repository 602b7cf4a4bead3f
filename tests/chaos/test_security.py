"""Issue 8, acceptance 8: nothing in djctl can unpickle; what a real ``djctl up`` leaves on disk
is its owner's only; another user is refused by the control socket's peer credentials; the
pid file is held with flock."""

from __future__ import annotations

import ast
import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import pytest

import djctl
from tests.chaos.conftest import kinds, make_app
from tests.jobs import Touch
from tests.support.commands import ROOT
from tests.support.rows import count
from tests.support.users import OTHER_UID, as_other_user
from tests.support.waiting import wait_for

# Modules that turn bytes into arbitrary objects (or code), and the builtins that run text.
UNSAFE_MODULES = {"pickle", "_pickle", "cPickle", "marshal", "shelve", "yaml", "ruamel", "dill", "cloudpickle",
                  "jsonpickle", "copyreg"}
UNSAFE_CALLS = {"eval", "exec", "compile", "__import__"}


def _unsafe(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call):
            fn = node.func
            if isinstance(fn, ast.Name) and fn.id in UNSAFE_CALLS:
                found.append(f"line {node.lineno}: {fn.id}()")
            # importlib.import_module("pickle") and friends, spelled out as a constant
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                     and a.value.split(".")[0] in UNSAFE_MODULES]
        found += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] in UNSAFE_MODULES]
    return found


def test_no_pickle_marshal_or_yaml_anywhere_in_djctl():
    sources = sorted((ROOT / "djctl").rglob("*.py"))
    assert len(sources) > 30
    found = {str(p.relative_to(ROOT)): hits for p in sources if (hits := _unsafe(ast.parse(p.read_text(), str(p))))}
    assert found == {}
    # The scan itself finds what it is looking for.
    assert _unsafe(ast.parse("import pickle\nfrom yaml import load\nimportlib.import_module('marshal')\neval('1')"))


@pytest.fixture
def reachable():
    """A directory another user can traverse but not list (pytest's own tmp dirs are 0700),
    so that only djctl's own modes stand between that user and the control socket."""
    base = Path(tempfile.mkdtemp(prefix="djctl-chaos-", dir="/tmp"))
    os.chmod(base, 0o711)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _raw_ps(path: Path) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(b'{"cmd": "ps"}\n')
        return s.makefile("rb").readline().decode()


@pytest.mark.parametrize("db_kind", kinds("sqlite"))
def test_a_real_up_is_owner_only_refuses_other_users_and_holds_its_pid_file(db_kind, request, tmp_path,
                                                                            reachable):
    state = reachable / "state"
    runtime = reachable / "runtime"  # where the SQLite doorbells go
    app = make_app(request, tmp_path, DJ_STATE_DIR=str(state), XDG_RUNTIME_DIR=str(runtime))
    app.state = state
    (app.dir / "pyproject.toml").write_text("[tool.djctl]\nlog-max-bytes = 4096\nlog-backups = 3\n")
    try:
        app.run("up", "--formation", "worker=2")
        app.wait_up(2)
        djctl.enqueue_many([Touch(str(tmp_path / "runs.txt"), str(i)) for i in range(300)])
        wait_for(lambda: count(app.db_url) == 0, 60, message="the jobs worked off")
        wait_for(lambda: (state / "djctl.log.1").exists(), 30, message="the log to rotate")

        # Owner-only, everything djctl made: 0700 directories, 0600 files and sockets.
        made = [state, *state.iterdir()]
        bells = runtime / "djctl-bells"
        made += [bells, *bells.rglob("*")]
        seen = {}
        for p in made:
            with contextlib.suppress(FileNotFoundError):  # an old log rotated away meanwhile
                st = os.lstat(p)
                seen[str(p)] = (oct(stat.S_IMODE(st.st_mode)), oct(0o700 if stat.S_ISDIR(st.st_mode) else 0o600),
                                st.st_uid)
        assert {p: mode for p, (mode, _, _) in seen.items()} == {p: want for p, (_, want, _) in seen.items()}
        assert {p.name for p in state.iterdir()} >= {"djctl.pid", "djctl.log", "djctl.log.1", "formation.json",
                                                      "control.sock"}
        assert all(uid == os.getuid() for _, _, uid in seen.values())

        # The pid file is locked by the running supervisor.
        pid = app.supervisor_pid()
        fd = os.open(state / "djctl.pid", os.O_RDONLY)
        try:
            for how in (fcntl.LOCK_EX, fcntl.LOCK_SH):
                with pytest.raises(OSError) as held:
                    fcntl.flock(fd, how | fcntl.LOCK_NB)
                assert held.value.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
        finally:
            os.close(fd)

        # Another user cannot even reach the socket...
        sock = state / "control.sock"
        assert "PermissionError" in as_other_user(lambda: _raw_ps(sock))
        # ...and after a careless chmod it is let through by the file system, and refused
        # by the supervisor, which reads who is connecting from the kernel (SO_PEERCRED).
        os.chmod(state, 0o711)
        os.chmod(sock, 0o666)
        try:
            reply = json.loads(as_other_user(lambda: _raw_ps(sock)))
        finally:
            os.chmod(sock, 0o600)
            os.chmod(state, 0o700)
        assert reply == {"ok": False, "error": f"permission denied: uid {OTHER_UID} does not own this supervisor"}
        wait_for(lambda: app.log_has(rf"Refused a control connection from uid {OTHER_UID} \(pid \d+\)"), 10,
                 message="the refusal in the log")
        assert len(app.ps()) == 2  # its owner still gets in
        assert app.supervisor_pid() == pid

        app.cli("down")
        assert not (state / "djctl.pid").exists() and not sock.exists()
        assert app.ours() == []
    finally:
        app.kill_everything()
