"""Issue 20: the commands an operator types under pressure start without importing what
talks to a database (SQLAlchemy, the drivers) or draws the console (Textual).

Each command runs as a real process under ``python -X importtime``, in a directory with
no supervisor, and the modules it imported are read from that report. Speed itself is
measured by ``python -m bench.startup``, not here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FORBIDDEN = ("sqlalchemy", "psycopg", "pymysql", "textual", "croniter")

COMMANDS = [
    (["ps"], "not running"),
    (["scale"], ""),
    (["down"], "not running"),
    (["restart"], "not running"),
    (["logs", "-n", "20"], "no log yet"),
    (["--help"], "Commands:"),
    (["-h"], "Commands:"),
]


def imported(args: list[str], cwd: Path) -> tuple[set[str], str]:
    """The top-level packages ``djctl ARGS`` imported, and what it said."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJ_", "DATABASE_URL"))}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "djctl", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)
    report = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert report, f"no import report from djctl {' '.join(args)}: {done.stderr!r}"
    modules = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in report[1:]}
    said = done.stdout + "\n".join(line for line in done.stderr.splitlines() if not line.startswith("import time:"))
    return modules, said


@pytest.mark.parametrize(("args", "says"), COMMANDS, ids=[" ".join(a) for a, _ in COMMANDS])
def test_command_without_database_imports_no_database_code(args, says, tmp_path):
    modules, said = imported(args, tmp_path)
    assert "djctl" in modules and "click" in modules
    assert says in said
    assert not modules & set(FORBIDDEN), f"djctl {' '.join(args)} imported {sorted(modules & set(FORBIDDEN))}"
    assert not (tmp_path / "delayed_jobs.sqlite3").exists()


def test_stats_still_imports_the_database_layer(tmp_path):
    """The report is read right: a command that reads the queue does import SQLAlchemy."""
    modules, said = imported(["--database-url", f"sqlite:///{tmp_path / 'q.sqlite3'}", "db", "upgrade"], tmp_path)
    assert "Database is at version" in said
    assert "sqlalchemy" in modules
