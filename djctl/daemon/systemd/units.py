"""The systemd unit for the supervisor, rendered: pure functions of :class:`UnitOptions`.

`render_unit` turns `UnitOptions` into unit text from the templates in the top-level
`systemd/` folder (shipped inside the package as `djctl/systemd/`). Writing the unit and
driving `systemctl` is :mod:`djctl.daemon.systemd.install`.

Secrets are never written into a unit: the environment comes from an optional
EnvironmentFile that the unit references and systemd reads at start.
"""

from __future__ import annotations

import importlib.resources
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_GRACE_SECONDS = 30
DEFAULT_WATCHDOG_SECONDS = 30
RESTART_SECONDS = 5
# Beyond the workers' grace: time for the supervisor to SIGKILL stragglers,
# release their claims and exit before systemd kills the whole group.
STOP_MARGIN_SECONDS = 15
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOME_TREES = (Path("/home"), Path("/root"), Path("/run/user"))
READ_ONLY_TREES = (Path("/usr"), Path("/etc"), Path("/boot"), Path("/efi"))

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SystemdError(ValueError):
    """A problem the operator can fix; its message is one line saying what and how.
    ``usage`` is set when the request itself was wrong (a bad path, a bad setting)
    rather than the system refusing it."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


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
