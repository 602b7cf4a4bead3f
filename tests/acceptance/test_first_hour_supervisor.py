"""Issue 12, the supervisor's part of a newcomer's first hour: what ``restart``, ``up``,
``ps`` and ``down`` tell a user, with real processes on SQLite and PostgreSQL."""

from __future__ import annotations

import sys

import pytest

from tests.support.app import App, heavy
from tests.support.waiting import wait_for


def says(word: str) -> str:
    """A Procfile command that prints ``word`` and then waits to be stopped."""
    return f"{sys.executable} -c \"import time; print('{word}', flush=True); time.sleep(600)\""


@pytest.fixture
def app(db_kind, request, tmp_path):
    heavy(db_kind)
    a = App(tmp_path / "app", request.getfixturevalue("djctl_env"), request.getfixturevalue("db_url"))
    yield a
    a.kill_everything()


def test_restart_runs_the_commands_the_procfile_names_now(app):
    """Point 6: restart re-reads the Procfile; a changed command takes effect, a new type
    is known (and can be scaled), a removed one stops."""
    (app.dir / "Procfile").write_text(f"worker: {says('old-worker')}\nclock: {says('clock')}\n")
    app.run("up", "--formation", "worker=1 clock=1")
    wait_for(lambda: app.log_has(r"app\[worker\.1\]: old-worker"), message="the old command's output")
    wait_for(lambda: app.log_has(r"app\[clock\.1\]: clock"), message="the clock's output")

    (app.dir / "Procfile").write_text(f"worker: {says('new-worker')}\nmail: {says('mail')}\n")
    out = app.cli("restart").stdout.splitlines()
    assert out == ["Procfile: added mail", "Procfile: removed clock",
                   f"Procfile: worker now runs `{says('new-worker')}`",
                   "Restarting all processes... done"]
    wait_for(lambda: app.log_has(r"app\[worker\.1\]: new-worker"), message="the new command's output")
    wait_for(lambda: not [p for p in app.ps() if p["type"] == "clock"], message="the clock stopped")
    assert app.cli("scale", "mail=1").returncode == 0
    wait_for(lambda: app.log_has(r"app\[mail\.1\]: mail"), message="the new type's output")
    assert app.cli("ps").stdout.startswith(f"=== worker: {says('new-worker')} (1)")

    # An unchanged Procfile: nothing to say about it.
    assert app.cli("restart", "-p", "worker").stdout.splitlines() == ["Restarting worker processes... done"]
    app.cli("down")


def test_renaming_a_type_and_back_keeps_its_count_and_up_warns_when_nothing_runs(app):
    """Point 5: worker -> Worker -> worker ends with worker=2 again, and the ``up`` that
    runs nothing says so."""
    (app.dir / "Procfile").write_text(f"worker: {says('w')}\n")
    app.run("up", "--formation", "worker=2")
    app.wait_up(2)
    app.cli("down")

    (app.dir / "Procfile").write_text(f"Worker: {says('w')}\n")
    result = app.run("up")
    assert result.stdout.strip().endswith("running Worker=0")
    assert result.stderr.strip() == ("djctl: warning: running no processes (Worker=0); the saved formation "
                                     "also has worker=2, not in the Procfile; start some with djctl scale Worker=1")
    app.cli("down")

    (app.dir / "Procfile").write_text(f"worker: {says('w')}\n")
    result = app.run("up")
    assert result.stdout.strip().endswith("running worker=2")
    assert result.stderr == ""
    app.wait_up(2)
    app.cli("down")


def test_up_fails_with_the_last_lines_of_a_process_that_exits_at_once(app):
    """Point 7: a mistyped command (``djctl wrok``) makes ``up`` exit 1 with the
    process's own words; a good one still says done."""
    (app.dir / "Procfile").write_text(f"worker: {says('fine')}\nmail: djctl wrok\n")
    # On a loaded machine an interpreter takes seconds to exit after its error line.
    app.env["DJ_UP_CHECK"] = "6"
    result = app.run("up", "--formation", "worker=1 mail=1", ok=False)
    assert result.returncode == 1, result.stderr
    assert "done" not in result.stdout
    assert result.stdout.startswith("Started djctl supervisor (pid "), result.stdout
    assert result.stdout.strip().endswith("but mail.1 did not stay up"), result.stdout
    err = result.stderr.splitlines()
    assert err[0] == "mail.1 did not stay up; its last lines:"
    assert any("No such command 'wrok'" in line and "app[mail.1]" in line for line in err[1:-1]), err
    assert err[-1] == ("djctl: mail.1 exited soon after starting; fix the command in the Procfile, then "
                       "djctl restart (the supervisor keeps retrying; djctl down stops it)")
    assert not any("worker.1" in line for line in err)
    app.cli("down")


def test_restart_fails_with_the_last_lines_of_a_process_that_exits_at_once(app):
    """A restart onto a mistyped command exits 1 with the process's own words from this
    start only, never ``done``; a fixed Procfile restarts cleanly again."""
    (app.dir / "Procfile").write_text(f"worker: {says('fine')}\nmail: {says('mail')}\n")
    app.env["DJ_UP_CHECK"] = "6"
    app.run("up", "--formation", "worker=1 mail=1")
    (app.dir / "Procfile").write_text(f"worker: {says('fine')}\nmail: djctl wrok\n")
    result = app.cli("restart", "-p", "mail", ok=False)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout.splitlines()[-1] == "Restarting mail processes... failed: mail.1 did not stay up"
    err = result.stderr.splitlines()
    assert err[0] == "mail.1 did not stay up; its last lines:"
    assert any("No such command 'wrok'" in line for line in err[1:-1]), err
    assert not any("app[mail.1]: mail" in line for line in err), "an earlier run's lines"

    (app.dir / "Procfile").write_text(f"worker: {says('fine')}\nmail: {says('mail')}\n")
    assert app.cli("restart", "-p", "mail").stdout.splitlines()[-1] == "Restarting mail processes... done"
    app.cli("down")


def test_in_another_directory_ps_says_where_the_supervisor_runs_and_C_reaches_it(app, tmp_path):
    """Point 8: ``cd elsewhere && djctl ps`` names the directory of the supervisor for
    this database; ``djctl -C DIR`` works from anywhere."""
    (app.dir / "Procfile").write_text(f"worker: {says('w')}\n")
    app.run("up")
    app.wait_up(1)
    elsewhere = App(tmp_path / "elsewhere", app.env, app.db_url)
    elsewhere.env.pop("DJ_STATE_DIR")  # the state dir of the directory djctl runs in

    result = elsewhere.run("ps", ok=False)
    assert result.returncode == 1
    sup = app.supervisor_pid()
    assert result.stderr.strip() == (f"djctl: djctl is not running here, but a supervisor for this database "
                                     f"runs in {app.dir} (pid {sup}); use djctl -C {app.dir} ps")
    assert elsewhere.run("down").stdout.strip().startswith("djctl is not running here, but a supervisor")
    scaled = elsewhere.run("scale", "worker=3", ok=False)
    assert scaled.returncode == 1 and scaled.stderr.strip() == (
        f"djctl: djctl is not running here, but a supervisor for this database runs in {app.dir} "
        f"(pid {sup}); use djctl -C {app.dir} scale; nothing saved here")
    assert not (elsewhere.dir / ".djctl" / "formation.json").exists()
    assert elsewhere.run("-C", str(app.dir), "ps").stdout.startswith(f"=== worker: {says('w')} (1)")

    other_db = App(tmp_path / "other", {k: v for k, v in app.env.items() if k != "DJ_DATABASE_URL"}, app.db_url)
    other_db.env.pop("DJ_STATE_DIR")
    # Other engineers' supervisors may run on this host too: ours is among those named.
    said = other_db.run("ps", ok=False).stderr.strip()
    assert said.startswith("djctl: djctl is not running here; supervisors for other databases run in ")
    assert said.endswith(" (djctl -C DIR ps reaches one); start one here with djctl up")
    assert f"{app.dir} (pid {sup})" in said or " more (djctl -C DIR" in said
    app.cli("down")
    assert elsewhere.run("ps", ok=False).stderr.startswith("djctl: djctl is not running")
    assert elsewhere.run("down").stdout.strip() == "djctl is not running."


def test_C_needs_a_directory(app, tmp_path):
    result = app.run("-C", str(tmp_path / "nosuch"), "ps", ok=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"djctl: Invalid value for '-C': Directory '{tmp_path / 'nosuch'}' does "
                                     f"not exist. (see 'djctl --help')")


def test_stats_in_an_empty_directory_creates_no_database(app, tmp_path):
    """Point 8: a command that only reads says there is no database here."""
    empty = App(tmp_path / "empty", {k: v for k, v in app.env.items() if k not in ("DJ_DATABASE_URL",
                                                                                  "DATABASE_URL")}, app.db_url)
    for args in (("stats",), ("ps", "--all-hosts")):
        result = empty.run(*args, ok=False)
        assert result.returncode == 1
        assert result.stderr.strip() == (f"djctl: no database here: {empty.dir}/delayed_jobs.sqlite3 does not exist; "
                                         f"run djctl in your app's directory (or djctl -C DIR), or point at one "
                                         f"with --database-url or DJ_DATABASE_URL")
    assert list(empty.dir.iterdir()) == []


def test_down_says_which_job_each_process_is_finishing(app, tmp_path):
    """Point 12: while ``down`` waits for a job in hand it names the job and the grace
    period left, then says done."""
    import re
    import subprocess
    import threading

    import djctl
    from tests.jobs import Gate

    app.env["DJ_GRACE_PERIOD"] = "60"  # the gate opens long before the grace period ends
    app.run("up")
    app.wait_up(1)
    runs, gate = tmp_path / "runs.txt", tmp_path / "gate"
    job_id = djctl.enqueue(Gate(str(runs), str(gate)))
    wait_for(lambda: runs.exists() and "start" in runs.read_text(), 30, message="the job to start")

    down = app.popen("down", stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(down.stdout), daemon=True)
    reader.start()
    said = re.compile(rf"  worker\.1 is finishing job {job_id} \(Gate\); up to (\d+)s of the grace period left")
    try:
        wait_for(lambda: any(said.fullmatch(line.rstrip("\n")) for line in lines), 30,
                 message=f"down to name the job; it said {lines}")
    finally:
        gate.touch()
    assert down.wait(60) == 0
    reader.join(10)
    left = [int(m[1]) for line in lines if (m := said.fullmatch(line.rstrip("\n")))]
    assert 0 < left[0] <= 60
    assert lines[0].startswith("Stopping djctl supervisor (pid ")
    assert lines[-1] == "done\n"
    assert runs.read_text().splitlines()[-1] == "end"


def test_up_warns_when_its_workers_have_no_app_to_run(app):
    """Point 2: the warning a worker without an app writes to the log is said by ``up``
    too — unless the Procfile's command passes --app itself."""
    env = {k: v for k, v in app.env.items() if k != "DJ_APP"}
    no_app = App(app.dir, env, app.db_url, procfile="worker: djctl work\n")
    result = no_app.run("up", "--formation", "worker=1")
    assert result.stderr.strip() == (
        "djctl: warning: no app configured, so workers may run no job's code and leave every job; "
        "set app in [tool.djctl] of pyproject.toml, DJ_APP or --app, then djctl restart")
    no_app.cli("down")
    (app.dir / "Procfile").write_text("worker: djctl work --app tests.jobs\n")
    assert no_app.run("up", "--formation", "worker=1").stderr == ""
    no_app.cli("down")
