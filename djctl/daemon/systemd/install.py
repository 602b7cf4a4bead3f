"""Installing the supervisor's systemd unit: the effects beside the pure rendering in
:mod:`djctl.daemon.systemd.units`.

`install` and `uninstall` write or remove the unit file and drive `systemctl` where a
service manager answers; where none does, they return the exact commands to run
instead. Every failure is one :class:`SystemdError` (``usage`` set for bad input);
the command line turns it into its own error line and exit code. `systemctl` is run
through an injected ``run`` so tests drive a scripted one.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from djctl.config import ConfigError, environment_variables, load_settings
from djctl.daemon.systemd.units import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_WATCHDOG_SECONDS,
    SystemdError,
    UnitOptions,
    render_unit,
    unit_path,
)

Runner = Callable[..., "subprocess.CompletedProcess[str]"]

PROBE_TIMEOUT_SECONDS = 5.0
# `enable --now` waits for READY=1, which comes once the formation is up.
COMMAND_TIMEOUT_SECONDS = 120.0
UNIT_MODE = 0o644
# Manager states in which `daemon-reload` and `enable --now` can work.
ANSWERING_STATES = frozenset({"running", "degraded", "starting", "initializing"})
DATABASE_VARIABLES = ("DJ_DATABASE_URL", "DATABASE_URL")


def prepare(user: bool, working_directory: Path | None, env_file: Path | None,
            environ: Mapping[str, str] | None = None) -> UnitOptions:
    """The unit options for `djctl systemd install`, checked: the directory and env file
    exist, the settings are valid, djctl is found. The grace period is the one the
    service will see: from the directory's pyproject.toml and the env file, not this
    shell. Raises SystemdError with ``usage`` set."""
    environ = os.environ if environ is None else environ
    directory = working_directory or Path.cwd()
    if not directory.is_dir():
        raise SystemdError(f"working directory {directory} does not exist; pass an existing --working-directory",
                           usage=True)
    if env_file is not None and not env_file.is_file():
        raise SystemdError(f"env file {env_file} does not exist; create it or drop --env-file", usage=True)
    try:
        service_env = _read_env_file(env_file) if env_file is not None else {}
        grace = load_settings(env=service_env, cwd=directory.absolute()).grace_period
        return unit_options(user, directory, env_file, environ=environ, grace_seconds=grace)
    except (ConfigError, SystemdError) as exc:
        raise SystemdError(str(exc), usage=True) from None
    except OSError as exc:
        raise SystemdError(f"cannot read env file {env_file}: {exc.strerror}", usage=True) from None


def find_djctl() -> Path | None:
    """The djctl script of the running interpreter's environment, else the one on PATH."""
    # Not resolved: a venv's python is a symlink out of the venv, its scripts are not.
    beside = Path(sys.executable).absolute().parent / "djctl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("djctl")
    return Path(found).absolute() if found else None


def unit_options(
    user: bool, working_directory: Path, env_file: Path | None = None, *, djctl: Path | None = None,
    environ: Mapping[str, str] | None = None, grace_seconds: float = DEFAULT_GRACE_SECONDS,
    watchdog_seconds: int = DEFAULT_WATCHDOG_SECONDS,
) -> UnitOptions:
    """Options for the invoking user (SUDO_USER under sudo) and this environment's djctl."""
    environ = os.environ if environ is None else environ
    djctl = djctl or find_djctl()
    if djctl is None:
        raise SystemdError("cannot find the djctl executable; install djctl where it will run")
    name = environ.get("SUDO_USER") if os.geteuid() == 0 else None
    name = name or getpass.getuser()
    try:
        home: Path | None = Path(pwd.getpwnam(name).pw_dir)
    except KeyError:
        home = None
    return UnitOptions(
        # Absolute but not resolved: /srv/app/current may be a symlink that a deploy
        # moves, and the unit must follow it.
        user=user, working_directory=Path(os.path.abspath(working_directory)),
        exec_start=(str(djctl), "up", "--foreground"),
        env_file=None if env_file is None else Path(os.path.abspath(env_file)),
        user_name=None if user else name, home=home,
        grace_seconds=grace_seconds, watchdog_seconds=watchdog_seconds,
    )


def install(
    opts: UnitOptions, dry_run: bool, run: Runner = subprocess.run, *, unit_dir: Path | None = None,
    name: str = "djctl",
) -> list[str]:
    """Write the unit, then daemon-reload and enable --now where systemctl answers.

    Returns the lines to show. Where systemctl is absent or not answering, the lines
    end with the exact commands to run. With `dry_run`, returns the unit text and the
    commands that would run, and writes nothing. Raises SystemdError on failure.
    """
    path = _path(opts.user, name, unit_dir)
    text = render_unit(opts)
    unit = f"{name}.service"
    commands = [_systemctl(opts.user, "daemon-reload"), _systemctl(opts.user, "enable", "--now", unit)]
    linger = _linger_hint() if opts.user else []
    if dry_run:
        # Every line not of the unit is a comment, so the output is itself a valid unit.
        tail = ["would run:", *map(shlex.join, commands), *linger]
        return [f"# {path} (dry run: nothing written)", *text.splitlines(), *("# " + line for line in tail)]
    previous = path.read_text(encoding="utf-8") if path.is_file() else None
    _write(path, text, opts.user)
    verb = "Wrote" if previous is None else ("Unchanged" if previous == text else "Updated")
    lines = [f"{verb} {path}"]
    if _answers(opts.user, run):
        for argv in commands:
            _run_checked(run, argv, path)
            lines.append(f"Ran {shlex.join(argv)}")
        lines.append(f"djctl is enabled and running: {shlex.join(_systemctl(opts.user, 'status', unit))}")
        if verb == "Updated":
            restart = shlex.join(_systemctl(opts.user, "restart", unit))
            lines.append(f"The unit changed; `{restart}` applies it (workers stop gracefully).")
    else:
        lines.append("systemctl is not answering here; to enable and start djctl, run:")
        lines.extend("  " + shlex.join(argv) for argv in commands)
    return lines + linger


def uninstall(
    user: bool, dry_run: bool, run: Runner = subprocess.run, *, unit_dir: Path | None = None,
    name: str = "djctl",
) -> list[str]:
    """Disable and stop the service, remove its unit and daemon-reload where systemctl answers.

    Returns the lines to show; where systemctl does not answer, the unit is still
    removed and the lines end with the exact commands to run. With `dry_run`, nothing
    changes. A missing unit is not an error. Raises SystemdError on failure.
    """
    path = _path(user, name, unit_dir)
    disable = _systemctl(user, "disable", "--now", f"{name}.service")
    reload = _systemctl(user, "daemon-reload")
    if not path.exists():
        return [f"No unit at {path}; nothing to uninstall"]
    if dry_run:
        return ["# dry run: nothing changed; would run:", shlex.join(disable), shlex.join(["rm", str(path)]),
                shlex.join(reload)]
    answers = _answers(user, run)
    lines = []
    if answers:
        _run_checked(run, disable, path)
        lines.append(f"Ran {shlex.join(disable)}")
    try:
        path.unlink()
    except OSError as exc:
        raise SystemdError(f"cannot remove {path}: {exc.strerror}; {_privilege_hint(user)}") from None
    lines.append(f"Removed {path}")
    if answers:
        _run_checked(run, reload, path)
        lines.append(f"Ran {shlex.join(reload)}")
    else:
        lines.append("systemctl is not answering here; to stop djctl and forget the unit, run:")
        lines.extend("  " + shlex.join(argv) for argv in (disable, reload))
    return lines


def environment_hints(env_file: Path | None, environ: Mapping[str, str] | None = None,
                      flags: Mapping[str, str | None] | None = None) -> list[str]:
    """Notes for the operator, never secrets: every setting of this shell (``DJ_*``,
    ``DATABASE_URL``) or command line (``--app``, ``--database-url``) that the unit
    will not see, and an env file others can read."""
    environ = os.environ if environ is None else environ
    service_env = _read_env_file(env_file) if env_file is not None else {}
    hints = []
    unseen = [name for name in environment_variables() if environ.get(name) and name not in service_env]
    if unseen:
        them = "it" if len(unseen) == 1 else "them"
        where = (f"put {them} in a file (chmod 600) and pass --env-file" if env_file is None
                 else f"add {them} to {env_file}")
        hints.append(f"the service will not see {', '.join(unseen)} from this shell; {where}")
    given = [name for name in ("app", "database_url") if (flags or {}).get(name)]
    if given:
        options = ", ".join("--" + name.replace("_", "-") for name in given)
        variables = ", ".join("DJ_" + name.upper() for name in given)
        hints.append(f"the service will not see {options} given here; set {variables} in the env file (--env-file)")
    if env_file is not None and env_file.stat().st_mode & 0o077:
        hints.append(f"{env_file} is readable by other users; chmod 600 it if it holds secrets")
    return hints


def _path(user: bool, name: str, unit_dir: Path | None) -> Path:
    return unit_dir / f"{name}.service" if unit_dir is not None else unit_path(user, name)


def _systemctl(user: bool, *args: str) -> list[str]:
    return ["systemctl", *(["--user"] if user else []), *args]


def _answers(user: bool, run: Runner) -> bool:
    """Whether a service manager answers; bounded by a timeout so a stuck bus cannot hang us."""
    try:
        done = run(_systemctl(user, "is-system-running"), capture_output=True, text=True,
                   timeout=PROBE_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    # The exit status is non-zero for "degraded" too, which is a working manager.
    return (done.stdout or "").strip() in ANSWERING_STATES


def _run_checked(run: Runner, argv: list[str], path: Path) -> None:
    command = shlex.join(argv)
    try:
        done = run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise SystemdError(f"`{command}` did not finish; see `journalctl -u {path.name}`") from None
    except OSError as exc:
        raise SystemdError(f"cannot run `{command}`: {exc.strerror}") from None
    if done.returncode != 0:
        detail = next((line for line in (done.stderr or "").splitlines() if line.strip()), "")
        raise SystemdError(f"`{command}` failed ({detail or f'exit {done.returncode}'}); the unit is {path}")


def _write(path: Path, text: str, user: bool) -> None:
    """Write atomically (no half-written unit for a concurrent daemon-reload)."""
    try:
        # XDG asks for 0700 when creating a user's config directories.
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if user else 0o755)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(tmp, UNIT_MODE)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise SystemdError(f"cannot write {path}: {exc.strerror}; {_privilege_hint(user)}") from None


def _privilege_hint(user: bool) -> str:
    return "check its directory's permissions" if user else "run it with sudo, or use --user"


def _linger_hint() -> list[str]:
    who = shlex.quote(getpass.getuser())
    return [f"To keep djctl running while you are logged out: loginctl enable-linger {who}"]


def _read_env_file(path: Path) -> dict[str, str]:
    """The KEY=value lines of an EnvironmentFile, enough to read djctl's own settings."""
    values = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith(("#", ";")):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
    return values
