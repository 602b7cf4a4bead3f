"""Issue 14, acceptance 9, in a real terminal: output a job prints can pose as no other
line or source in ``djctl top``, ``djctl logs`` or ``logs -t``, and counts as no completion."""

from __future__ import annotations

import re
import shutil
import sys

import pytest

import djctl
from tests.jobs import Forger, Touch
from tests.support.app import running_app
from tests.support.commands import djctl_cmd
from tests.support.terminal import PROMPT, Terminal
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
DONE_RATE = re.compile(r"done (\d+\.\d)/s")


def test_job_output_poses_as_nothing_in_top_and_counts_no_completion(db_kind, request, tmp_path):
    """Issue 14, acceptance 9: a job prints fake COMPLETED reports, ANSI escapes and the
    supervisor's own words after \\r, \\x1e, \\u2028, \\x85 and \\v. In ``djctl top``
    (tmux) none of it shows as a line of another source, nothing is erased, and the
    throughput counts the three real completions only."""
    if db_kind == "mysql":
        pytest.skip("the console is accepted on SQLite and PostgreSQL")
    app = next(running_app(request, tmp_path, procfile=f"worker: {sys.executable} -m djctl work\n",
                           DJ_APP="tests.jobs"))
    term = Terminal(tmp_path, app.env)
    try:
        app.run("up", "--formation", "worker=1")
        app.wait_up(1)
        wait_for(lambda: term.screen().rstrip().endswith(PROMPT.rstrip()), message="the shell prompt")
        term.type(" ".join(djctl_cmd("top", "--refresh", "0.2")), "Enter")
        wait_for(lambda: DONE_RATE.search(term.screen()) and "worker.1" in term.screen(), timeout=30,
                 message="the console's throughput and processes")
        touched = tmp_path / "touched"
        djctl.enqueue(Forger(fakes=100))
        for key in ("a", "b"):
            djctl.enqueue(Touch(str(touched), key))

        rates: list[float] = []

        def rate_back_to_zero() -> bool:
            rates.extend(float(m[1]) for m in DONE_RATE.finditer(term.screen()))
            return any(rates) and rates[-1] == 0.0
        wait_for(rate_back_to_zero, timeout=60, interval=0.2, message=f"the done rate to rise and fall: {rates}")
        assert 0.0 < max(rates) <= 0.3, f"3 jobs completed; the console counted up to {max(rates) * 10:g}"

        screen = term.screen()  # the dashboard's log panel: one row per line, cut at its edge
        rows = screen.splitlines()
        assert not [r for r in rows if re.search(r"\d\d:\d\d:\d\d worker\.7\b", r)], screen
        assert not [r for r in rows if re.search(r"\d\d:\d\d:\d\d \S+ State changed from up to FORGED", r)], screen
        for n, shown in enumerate(("\\r", "\\x1e", "\\u2028", "\\x85", "\\x0b")):
            line = rf"\d\d:\d\d:\d\d worker\.1 job says{re.escape(shown)}2026.*FORGED{n}"
            assert [r for r in rows if re.search(line, r)], screen
        assert "worker.1 \\x1b[1A\\x1b[2K\\x1b[2Jerased" in screen

        # A second window of the same terminal, while the console runs on in the first.
        term.tmux("new-window", "-t", "top", "-c", str(tmp_path), f"bash --noprofile --rcfile {tmp_path / 'bashrc'}")
        wait_for(lambda: term.screen().rstrip().endswith(PROMPT.rstrip()), message="the second window's prompt")
        # The same lines through `djctl logs` and `djctl logs -t`, printed to the terminal itself.
        for follow in ((), ("-t",)):
            term.type("clear", "Enter")
            term.type(" ".join(djctl_cmd("logs", *follow, "-p", "worker", "-n", "14")), "Enter")
            wait_for(lambda: "FORGED4" in term.screen(), timeout=30, message=f"the forged lines in logs {follow}")
            _shows_forgeries_as_worker_1s_own(term.tmux("capture-pane", "-p", "-J", "-t", "top"))
            if follow:
                term.type("C-c")
            wait_for(lambda: term.screen().rstrip().endswith(PROMPT.rstrip()), message="the prompt back")
    finally:
        term.close()
        app.run("down", ok=False)
        app.kill_everything()


def _shows_forgeries_as_worker_1s_own(screen: str) -> None:
    """Each forged line is one line of worker.1's, its separators and escapes visible;
    nothing on screen was erased (the command line is still there)."""
    lines = screen.splitlines()
    assert any("djctl logs" in line or "-m djctl logs" in line for line in lines), screen
    assert not [line for line in lines if re.match(r"\S+ djctl\[worker\.7\]", line)], screen
    for n, shown in enumerate(("\\r", "\\x1e", "\\u2028", "\\x85", "\\x0b")):
        mine = [line for line in lines if f"FORGED{n}" in line]
        assert len(mine) == 1 and re.match(rf"\S+ app\[worker\.1\]: job says{re.escape(shown)}2026", mine[0]), screen
    assert any(line.endswith("app[worker.1]: \\x1b[1A\\x1b[2K\\x1b[2Jerased") for line in lines), screen
