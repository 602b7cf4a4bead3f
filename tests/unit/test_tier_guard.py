"""The unit tier's guard: starting a process or reaching a server fails the test."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from sqlalchemy import create_engine

from tests.unit.conftest import UnitTierViolation


def test_a_child_process_is_refused(unit_tier_violations):
    with pytest.raises(UnitTierViolation, match="child process"):
        subprocess.run(["true"])
    with pytest.raises(UnitTierViolation, match="os.fork"):
        os.fork()
    assert len(unit_tier_violations) == 2
    unit_tier_violations.clear()


def test_a_server_connection_is_refused(unit_tier_violations):
    with socket.socket() as s, pytest.raises(UnitTierViolation, match="connect to a server"):
        s.connect(("127.0.0.1", 9))
    with pytest.raises(UnitTierViolation, match="PostgreSQL"):
        create_engine("postgresql+psycopg://postgres@127.0.0.1:9/x").connect()
    with pytest.raises(UnitTierViolation, match="connect to a server"):
        create_engine("mysql+pymysql://root@127.0.0.1:9/x").connect()
    assert len(unit_tier_violations) == 3
    unit_tier_violations.clear()


def test_unix_sockets_and_sqlite_files_stay_open(tmp_path):
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"x")
        assert b.recv(1) == b"x"
    with create_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}").connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
