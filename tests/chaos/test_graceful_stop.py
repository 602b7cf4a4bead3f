"""Issue 8, acceptance 6: ``djctl down`` while four workers are busy lets every running job
finish within the grace period, leaves no row locked, and exits 0."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

import djctl
from djctl import api
from tests.chaos import Span
from tests.chaos.conftest import kinds
from tests.support.rows import locked
from tests.support.waiting import wait_for


def lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("db_kind", kinds("sqlite", "postgresql"))
def test_down_under_load_lets_running_jobs_finish_and_leaves_nothing_locked(db_kind, app, tmp_path):
    path = tmp_path / "spans.txt"
    app.env["DJ_GRACE_PERIOD"] = "20"
    app.run("up", "--formation", "worker=4")
    app.wait_up(4)
    total = 40
    djctl.enqueue_many([Span(str(path), str(i), seconds=1.5) for i in range(total)])
    wait_for(lambda: len({ln for ln in lines(path) if ln.startswith("start")}) >= 4, 30,
             message="four jobs running at once")

    down = app.run("down")
    # While it waits, down names the job each worker is finishing (issue 12, point 12).
    assert down.returncode == 0 and re.fullmatch(
        r"Stopping djctl supervisor \(pid \d+\)\.\.\. (\n(  worker\.\d (is stopping|is finishing job \d+ \(Span\)"
        r"(?: \(\d+ more claimed\))?); up to \d+s of the grace period left\n)+)?done\n", down.stdout), down.stdout
    assert app.ours() == []
    started = {ln.split()[1] for ln in lines(path) if ln.startswith("start")}
    ended = {ln.split()[1] for ln in lines(path) if ln.startswith("end")}
    assert len(started) >= 4 and started == ended, "a running job was cut short"
    assert locked(app.db_url) == []
    # The jobs that had not started were given back untouched: no attempt spent, no error.
    with api.engine(app.db_url).connect().execution_options(sqlite_read=True) as conn:
        rows = conn.execute(text("SELECT attempts, last_error, failed_at FROM delayed_jobs")).all()
    assert len(rows) == total - len(ended)
    assert {tuple(r) for r in rows} == {(0, None, None)}
    # Within the grace period: every worker exited by itself, none was killed.
    assert len(app.log_has(r"djctl\[worker\.\d\]: Process exited with status 0$")) == 4
    assert not app.log_has(r"SIGKILL|Error R12")
