"""The systemd unit: what `render_unit` produces, that systemd accepts it, and install/uninstall.

`systemd-analyze verify` is the judge of every rendered unit. It exits 0 even on
warnings such as an unknown key, so any line it prints about the unit is a failure;
lines about other units are host noise and ignored (this host prints none). Its
`--user` mode needs a runtime directory, which a test session may lack: the tests
give it one.

No test drives the host's systemd: `systemctl` is a script the test writes and
puts alone on PATH (a real process answering as systemd would), or nothing at all.
"""

from __future__ import annotations

import functools
import getpass
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from djctl.cli.base import Failure
from djctl.cli.systemd import install_unit, uninstall_unit
from djctl.daemon.systemd.install import install, uninstall
from djctl.daemon.systemd.units import UnitOptions, render_unit
from tests.support.systemd import DJCTL, needs_djctl, options, parse

ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
pytestmark = needs_djctl


def verify(text: str, user: bool, tmp_path: Path) -> list[str]:
    """What `systemd-analyze verify` says about the unit `text` (empty when it is clean)."""
    if not Path(ANALYZE).exists():
        pytest.skip("systemd-analyze is not installed")
    directory = tmp_path / "verify"
    directory.mkdir(exist_ok=True)
    path = directory / "djctl.service"
    path.write_text(text)
    env = dict(os.environ)
    if user:
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime)
    done = subprocess.run([ANALYZE, *(["--user"] if user else []), "verify", str(path)],
                          capture_output=True, text=True, timeout=60, env=env)
    said = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 0, said
    return [line for line in said if "djctl" in line]


@pytest.mark.parametrize("env_file", [False, True], ids=["no-env-file", "env-file"])
@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_systemd_accepts_every_rendered_unit(user: bool, env_file: bool, tmp_path: Path) -> None:
    assert verify(render_unit(options(user, tmp_path, env_file)), user, tmp_path) == []


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_odd_paths_are_escaped(user: bool, tmp_path: Path) -> None:
    """Spaces, %, $ and ; reach systemd intact: verify finds the executable through them."""
    odd = tmp_path / "odd dir 100% $HOME;x"
    odd.mkdir()
    (odd / "djctl").symlink_to(DJCTL)
    (odd / "env file").write_text("")
    opts = UnitOptions(user=user, working_directory=odd, exec_start=(str(odd / "djctl"), "up", "a $b;c", ";"),
                       env_file=odd / "env file", user_name=None if user else getpass.getuser())
    text = render_unit(opts)
    assert verify(text, user, tmp_path) == []
    assert f"WorkingDirectory={tmp_path}/odd dir 100%% $HOME;x\n" in text


def test_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    """The check has teeth: a warning that leaves verify's exit status at 0 still fails."""
    text = render_unit(options(False, tmp_path)).replace("WatchdogSec=30", "WatchdogSec=soon")
    assert any("WatchdogSec" in line or "sec value" in line for line in verify(text, False, tmp_path))


# --- installing -------------------------------------------------------------------------

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def systemctl_runner(tmp_path: Path, script: str | None, timeout: float | None = None) -> Runner:
    """subprocess.run with PATH holding only a `systemctl` running `script` (none if None)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if script is not None:
        tool = bin_dir / "systemctl"
        tool.write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/systemctl.log\n{script}\n")
        tool.chmod(0o755)
    run = functools.partial(subprocess.run, env={"PATH": str(bin_dir)})
    if timeout is None:
        return run
    return lambda argv, **kw: run(argv, **{**kw, "timeout": timeout})


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "systemctl.log"
    return log.read_text().splitlines() if log.exists() else []


RUNNING = 'case "$1$2" in *is-system-running) echo running;; esac; exit 0'
DEGRADED = 'case "$1$2" in *is-system-running) echo degraded; exit 1;; esac; exit 0'
OFFLINE = "echo offline; exit 1"
HANGING = "exec /bin/sleep 60"
ENABLE_FAILS = ('case "$*" in *is-system-running) echo running;; *enable*) echo "Failed to enable unit: boom" >&2;'
                " exit 1;; esac; exit 0")


@pytest.fixture
def app(tmp_path: Path) -> Path:
    directory = tmp_path / "app"
    directory.mkdir()
    return directory


def run_install(tmp_path: Path, app: Path, run: Runner, user: bool = False, dry_run: bool = False,
                env_file: Path | None = None,
                environ: dict[str, str] | None = None) -> tuple[int, list[str], list[str]]:
    out: list[str] = []
    err: list[str] = []
    try:
        install_unit(user, dry_run, app, env_file, out.append, err.append,
                     unit_dir=tmp_path / "units", run=run, environ=environ or {})
    except Failure as e:
        return e.exit_code, out, [*err, f"djctl: {e.format_message()}"]
    return 0, out, err


def run_uninstall(tmp_path: Path, run: Runner, user: bool = False, dry_run: bool = False) -> tuple[int, list[str]]:
    out: list[str] = []
    try:
        uninstall_unit(user, dry_run, out.append, unit_dir=tmp_path / "units", run=run)
    except Failure as e:
        return e.exit_code, [*out, f"djctl: {e.format_message()}"]
    return 0, out


def test_dry_run_prints_the_unit_and_writes_nothing(tmp_path: Path, app: Path) -> None:
    code, out, err = run_install(tmp_path, app, systemctl_runner(tmp_path, RUNNING), dry_run=True)
    assert code == 0 and err == []
    assert not (tmp_path / "units").exists()
    assert calls(tmp_path) == []
    unit = tmp_path / "units/djctl.service"
    assert out[0] == f"# {unit} (dry run: nothing written)"
    assert out[-3:] == ["# would run:", "# systemctl daemon-reload", "# systemctl enable --now djctl.service"]
    # Everything else is a comment, so the output is itself the unit systemd accepts.
    assert verify("\n".join(out) + "\n", False, tmp_path) == []
    assert parse("\n".join(out))["Service"]["ExecStart"] == [f"{DJCTL} up --foreground"]


@pytest.mark.parametrize("script", [None, OFFLINE, HANGING], ids=["absent", "offline", "hanging"])
@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_without_systemd_the_exact_commands_are_printed(user: bool, script: str | None, tmp_path: Path,
                                                        app: Path) -> None:
    run = systemctl_runner(tmp_path, script, timeout=0.5 if script == HANGING else None)
    unit = tmp_path / "units/djctl.service"
    flag = ["--user"] if user else []
    code, out, _ = run_install(tmp_path, app, run, user=user)
    linger = [f"To keep djctl running while you are logged out: loginctl enable-linger {getpass.getuser()}"]
    assert code == 0
    assert out == [
        f"Wrote {unit}",
        "systemctl is not answering here; to enable and start djctl, run:",
        " ".join(["  systemctl", *flag, "daemon-reload"]),
        " ".join(["  systemctl", *flag, "enable", "--now", "djctl.service"]),
        *(linger if user else []),
    ]
    assert unit.is_file() and stat.S_IMODE(unit.stat().st_mode) == 0o644
    code, out = run_uninstall(tmp_path, run, user=user)
    assert code == 0
    assert out == [
        f"Removed {unit}",
        "systemctl is not answering here; to stop djctl and forget the unit, run:",
        " ".join(["  systemctl", *flag, "disable", "--now", "djctl.service"]),
        " ".join(["  systemctl", *flag, "daemon-reload"]),
    ]
    assert list((tmp_path / "units").iterdir()) == []


@pytest.mark.parametrize("script", [RUNNING, DEGRADED], ids=["running", "degraded"])
@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_where_systemctl_answers_it_reloads_and_enables(user: bool, script: str, tmp_path: Path, app: Path) -> None:
    run = systemctl_runner(tmp_path, script)
    flag = "--user " if user else ""
    code, out, _ = run_install(tmp_path, app, run, user=user)
    assert code == 0
    assert calls(tmp_path) == [f"{flag}is-system-running", f"{flag}daemon-reload", f"{flag}enable --now djctl.service"]
    assert out[1:4] == [f"Ran systemctl {flag}daemon-reload", f"Ran systemctl {flag}enable --now djctl.service",
                        f"djctl is enabled and running: systemctl {flag}status djctl.service"]
    (tmp_path / "systemctl.log").unlink()
    code, out = run_uninstall(tmp_path, run, user=user)
    assert code == 0
    assert calls(tmp_path) == [f"{flag}is-system-running", f"{flag}disable --now djctl.service",
                               f"{flag}daemon-reload"]
    assert not (tmp_path / "units/djctl.service").exists()


def test_a_failing_systemctl_is_one_line(tmp_path: Path, app: Path) -> None:
    code, out, err = run_install(tmp_path, app, systemctl_runner(tmp_path, ENABLE_FAILS))
    unit = tmp_path / "units/djctl.service"
    assert code == 1 and out == []
    assert err == [f"djctl: `systemctl enable --now djctl.service` failed (Failed to enable unit: boom); "
                   f"the unit is {unit}"]


def test_reinstalling_says_what_changed(tmp_path: Path, app: Path) -> None:
    run = systemctl_runner(tmp_path, RUNNING)
    unit = tmp_path / "units/djctl.service"
    assert run_install(tmp_path, app, run)[1][0] == f"Wrote {unit}"
    assert run_install(tmp_path, app, run)[1][0] == f"Unchanged {unit}"
    (app / "pyproject.toml").write_text("[tool.djctl]\ngrace-period = 100\n")
    code, out, _ = run_install(tmp_path, app, run)
    assert out[0] == f"Updated {unit}"
    assert out[-1] == ("The unit changed; `systemctl restart djctl.service` applies it "
                       "(workers stop gracefully).")
    assert parse(unit.read_text())["Service"]["TimeoutStopSec"] == ["115"]


def test_the_grace_period_is_the_one_the_service_sees(tmp_path: Path, app: Path) -> None:
    env_file = tmp_path / "djctl.env"
    env_file.write_text("# settings\nDJ_GRACE_PERIOD='200'\n")
    env_file.chmod(0o600)
    code, out, err = run_install(tmp_path, app, systemctl_runner(tmp_path, None), env_file=env_file,
                                 environ={"DJ_GRACE_PERIOD": "5"})
    assert code == 0 and err == []
    assert parse((tmp_path / "units/djctl.service").read_text())["Service"]["TimeoutStopSec"] == ["215"]


def test_secrets_stay_out_of_the_unit(tmp_path: Path, app: Path) -> None:
    environ = {"DJ_DATABASE_URL": "postgresql://app:hunter2@db/app"}
    code, out, err = run_install(tmp_path, app, systemctl_runner(tmp_path, None), environ=environ)
    assert code == 0
    assert "hunter2" not in "\n".join(out + err) + (tmp_path / "units/djctl.service").read_text()
    assert err == ["djctl: note: the service will not see DJ_DATABASE_URL from this shell; "
                   "put it in a file (chmod 600) and pass --env-file"]
    env_file = tmp_path / "djctl.env"
    env_file.write_text("DJ_DATABASE_URL=postgresql://app:hunter2@db/app\n")
    env_file.chmod(0o644)
    code, out, err = run_install(tmp_path, app, systemctl_runner(tmp_path, None), env_file=env_file,
                                 environ=environ)
    assert "hunter2" not in (tmp_path / "units/djctl.service").read_text()
    assert err == [f"djctl: note: {env_file} is readable by other users; chmod 600 it if it holds secrets"]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, app: Path) -> None:
    run = systemctl_runner(tmp_path, RUNNING)
    code, out, err = run_install(tmp_path, tmp_path / "nowhere", run)
    assert (code, out) == (2, [])
    assert err == [f"djctl: working directory {tmp_path / 'nowhere'} does not exist; "
                   "pass an existing --working-directory"]
    code, out, err = run_install(tmp_path, app, run, env_file=tmp_path / "missing.env")
    assert (code, out) == (2, [])
    assert err == [f"djctl: env file {tmp_path / 'missing.env'} does not exist; create it or drop --env-file"]
    quoted = tmp_path / 'it"s'
    quoted.mkdir()
    code, out, err = run_install(tmp_path, quoted, run)
    assert code == 2 and len(err) == 1 and "systemd cannot use the path" in err[0]
    assert not (tmp_path / "units").exists() and calls(tmp_path) == []


def test_user_unit_directory_is_created_owner_only(tmp_path: Path) -> None:
    opts = options(True, tmp_path)
    units = tmp_path / "config/systemd/user"
    install(opts, dry_run=False, run=systemctl_runner(tmp_path, None), unit_dir=units)
    assert stat.S_IMODE(units.stat().st_mode) == 0o700
    assert (units / "djctl.service").read_text() == render_unit(opts)


def test_uninstall_without_a_unit_is_harmless(tmp_path: Path) -> None:
    run = systemctl_runner(tmp_path, RUNNING)
    assert uninstall(False, dry_run=False, run=run, unit_dir=tmp_path) == [
        f"No unit at {tmp_path / 'djctl.service'}; nothing to uninstall"]
    assert calls(tmp_path) == []


def test_uninstall_dry_run_changes_nothing(tmp_path: Path, app: Path) -> None:
    run = systemctl_runner(tmp_path, RUNNING)
    run_install(tmp_path, app, run)
    (tmp_path / "systemctl.log").unlink()
    unit = tmp_path / "units/djctl.service"
    code, out = run_uninstall(tmp_path, run, dry_run=True)
    assert code == 0 and unit.is_file() and calls(tmp_path) == []
    assert out == ["# dry run: nothing changed; would run:", "systemctl disable --now djctl.service",
                   f"rm {unit}", "systemctl daemon-reload"]
