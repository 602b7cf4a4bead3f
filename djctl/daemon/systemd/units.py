"""The systemd unit for the supervisor: rendering it (pure) and installing it (writes).

`render_unit` turns `UnitOptions` into unit text from the templates in the top-level
`systemd/` folder (shipped inside the package as `djctl/systemd/`). `install` and
`uninstall` write or remove the unit file and drive `systemctl` where a service
manager answers; where none does, they return the exact commands to run instead.

Secrets are never written into a unit: the environment comes from an optional
EnvironmentFile that the unit references and systemd reads at start.
"""

from __future__ import annotations

import getpass
import importlib.resources
import math
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from djctl.config import ConfigError, load_settings

Runner = Callable[..., "subprocess.CompletedProcess[str]"]

DEFAULT_GRACE_SECONDS = 30
DEFAULT_WATCHDOG_SECONDS = 30
RESTART_SECONDS = 5
# Beyond the workers' grace: time for the supervisor to SIGKILL stragglers,
# release their claims and exit before systemd kills the whole group.
STOP_MARGIN_SECONDS = 15
PROBE_TIMEOUT_SECONDS = 5.0
# `enable --now` waits for READY=1, which comes once the formation is up.
COMMAND_TIMEOUT_SECONDS = 120.0
UNIT_MODE = 0o644
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Manager states in which `daemon-reload` and `enable --now` can work.
ANSWERING_STATES = frozenset({"running", "degraded", "starting", "initializing"})
HOME_TREES = (Path("/home"), Path("/root"), Path("/run/user"))
READ_ONLY_TREES = (Path("/usr"), Path("/etc"), Path("/boot"), Path("/efi"))
DATABASE_VARIABLES = ("DJ_DATABASE_URL", "DATABASE_URL")

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SystemdError(ValueError):
    """A problem the operator can fix; its message is one line saying what and how."""


@dataclass(frozen=True)
class UnitOptions:
    """Everything a rendered unit depends on; build one with `unit_options()`.

    `exec_start` is the argv of the foreground supervisor (absolute djctl path first).
    `user_name` is the service's `User=` (system units only); `home` is that user's
    home, used only to decide whether ProtectHome= is safe. `grace_seconds` is the
    workers' stop grace period: TimeoutStopSec is always longer.
    """

    user: bool
    working_directory: Path
    exec_start: tuple[str, ...]
    env_file: Path | None = None
    user_name: str | None = None
    home: Path | None = None
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    watchdog_seconds: int = DEFAULT_WATCHDOG_SECONDS

    def __post_init__(self) -> None:
        if not self.exec_start:
            raise SystemdError("no command to start the supervisor with")
        paths = [self.working_directory, Path(self.exec_start[0]), *([self.env_file] if self.env_file else [])]
        for path in paths:
            # systemd refuses quotes and backslashes in an executable's path, and a
            # newline in any value would start a new directive in the unit.
            if not path.is_absolute() or re.search(r"[\\\"'\x00-\x1f\x7f]", str(path)):
                raise SystemdError(f"systemd cannot use the path {str(path)!r}: give an absolute path "
                                   "without quotes, backslashes or control characters")
        if any(_CONTROL.search(text) for text in [*self.exec_start, self.user_name or ""]):
            raise SystemdError("an argument or user name contains a control character; remove it")
        if not self.user and not self.user_name:
            raise SystemdError("a system unit needs a user to run as")
        if self.grace_seconds < 0 or self.watchdog_seconds <= 0:
            raise SystemdError("grace must be >= 0 and watchdog > 0 seconds")


def render_unit(opts: UnitOptions) -> str:
    """Return the unit text for `opts`. Pure: reads only the packaged template."""
    values: dict[str, str | None] = {
        "WORKING_DIRECTORY": _specifiers(str(opts.working_directory)),
        "USER": None if opts.user else opts.user_name,
        "PATH_ENVIRONMENT": _quote(f"PATH={Path(opts.exec_start[0]).parent}:{BASE_PATH}"),
        "ENVIRONMENT_FILE": None if opts.env_file is None else _specifiers(str(opts.env_file)),
        "EXEC_START": " ".join(_exec_word(word, i > 0) for i, word in enumerate(opts.exec_start)),
        "TIMEOUT_STOP_SEC": str(math.ceil(opts.grace_seconds) + STOP_MARGIN_SECONDS),
        "RESTART_SEC": str(RESTART_SECONDS),
        "WATCHDOG_SEC": str(opts.watchdog_seconds),
        "PROTECT_SYSTEM": None if _under(opts.working_directory, READ_ONLY_TREES) else "full",
        "PROTECT_HOME": "yes" if _home_free(opts) else None,
    }
    lines: list[str] = []
    comments: list[str] = []
    for line in template_text(opts.user).splitlines():
        if line.startswith("#"):
            comments.append(line)
            continue
        # A directive whose value is absent is left out, with the comment above it,
        # rather than rendered empty (an empty value resets the setting).
        if not any(values[name] is None for name in _PLACEHOLDER.findall(line)):
            lines += comments
            lines.append(_PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), line))
        comments = []
    return "\n".join(lines + comments) + "\n"


def template_text(user: bool) -> str:
    """The template for a user or system unit: from the installed package, else the checkout."""
    name = "djctl-user.service" if user else "djctl.service"
    try:
        packaged = importlib.resources.files("djctl") / "systemd" / name
        if packaged.is_file():
            return packaged.read_text(encoding="utf-8")
    except (ModuleNotFoundError, OSError, TypeError):
        pass
    return (Path(__file__).resolve().parents[3] / "systemd" / name).read_text(encoding="utf-8")


def unit_path(user: bool, name: str = "djctl", environ: Mapping[str, str] | None = None) -> Path:
    """Where systemd looks for the unit: /etc/systemd/system, or the user's config dir."""
    if not user:
        return Path("/etc/systemd/system") / f"{name}.service"
    environ = os.environ if environ is None else environ
    config = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user" / f"{name}.service"


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


def systemd_install(
    user: bool, dry_run: bool, working_directory: Path | None, env_file: Path | None,
    echo: Callable[[str], None], *, error: Callable[[str], None] | None = None,
    unit_dir: Path | None = None, run: Runner = subprocess.run, environ: Mapping[str, str] | None = None,
) -> int:
    """`djctl systemd install`: validate, install, echo each line. Returns the exit code.

    2 for bad input (a missing working directory or env file, bad settings, no djctl
    executable), 1 when installing fails, else 0. Errors and notes go to `error`
    (stderr by default), one line each. The grace period is the one the service
    will see: from the directory's pyproject.toml and the env file, not this shell.
    """
    error = error or _stderr
    environ = os.environ if environ is None else environ
    directory = working_directory or Path.cwd()
    if not directory.is_dir():
        error(f"djctl: working directory {directory} does not exist; pass an existing --working-directory")
        return 2
    if env_file is not None and not env_file.is_file():
        error(f"djctl: env file {env_file} does not exist; create it or drop --env-file")
        return 2
    try:
        service_env = _read_env_file(env_file) if env_file is not None else {}
        grace = load_settings(env=service_env, cwd=directory.absolute()).grace_period
        opts = unit_options(user, directory, env_file, environ=environ, grace_seconds=grace)
    except (ConfigError, SystemdError) as exc:
        error(f"djctl: {exc}")
        return 2
    except OSError as exc:
        error(f"djctl: cannot read env file {env_file}: {exc.strerror}")
        return 2
    try:
        lines = install(opts, dry_run, run, unit_dir=unit_dir)
    except SystemdError as exc:
        error(f"djctl: {exc}")
        return 1
    for line in lines:
        echo(line)
    for line in _environment_hints(env_file, environ):
        error(line)
    return 0


def systemd_uninstall(
    user: bool, dry_run: bool, echo: Callable[[str], None], *, error: Callable[[str], None] | None = None,
    unit_dir: Path | None = None, run: Runner = subprocess.run,
) -> int:
    """`djctl systemd uninstall`: echo each line; exit code 1 when removing fails, else 0."""
    try:
        lines = uninstall(user, dry_run, run, unit_dir=unit_dir)
    except SystemdError as exc:
        (error or _stderr)(f"djctl: {exc}")
        return 1
    for line in lines:
        echo(line)
    return 0


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


def _environment_hints(env_file: Path | None, environ: Mapping[str, str]) -> list[str]:
    """Hints, never secrets: the unit does not see the shell's environment."""
    hints = []
    unseen = [name for name in DATABASE_VARIABLES if environ.get(name)]
    if unseen and env_file is None:
        hints.append(f"djctl: note: the service will not see {', '.join(unseen)} from this shell; "
                     "put it in a file (chmod 600) and pass --env-file")
    if env_file is not None and env_file.stat().st_mode & 0o077:
        hints.append(f"djctl: note: {env_file} is readable by other users; chmod 600 it if it holds secrets")
    return hints


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


def _home_free(opts: UnitOptions) -> bool:
    if opts.user or opts.home is None:
        return False
    paths = [opts.working_directory, Path(opts.exec_start[0]), opts.home]
    paths += [opts.env_file] if opts.env_file is not None else []
    return not any(_under(path, HOME_TREES) for path in paths)


def _under(path: Path, trees: tuple[Path, ...]) -> bool:
    return any(path == tree or tree in path.parents for tree in trees)


def _specifiers(text: str) -> str:
    """Escape systemd's %-specifiers in a value systemd reads verbatim otherwise."""
    return text.replace("%", "%%")


def _quote(text: str) -> str:
    """A double-quoted word: systemd unquotes and C-unescapes it after specifiers."""
    return '"' + _specifiers(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _exec_word(word: str, expand: bool) -> str:
    """One ExecStart= word. `$` is escaped where systemd would expand it at exec time:
    in arguments, not in the executable's path, which it takes as written."""
    if word == ";":
        return "\\;"
    text = _specifiers(word) if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word) else _quote(word)
    return text.replace("$", "$$") if expand else text


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)
