"""The systemd unit as ``render_unit`` produces it, and the paths it refuses: pure rendering, no process."""

from __future__ import annotations

import getpass
import shutil
from pathlib import Path

import pytest

from djctl.daemon.systemd.units import (
    DEFAULT_GRACE_SECONDS,
    SystemdError,
    UnitOptions,
    render_unit,
    unit_path,
)
from tests.support.systemd import DJCTL, needs_djctl, options, parse

ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
pytestmark = needs_djctl


def test_system_unit(tmp_path: Path) -> None:
    unit = parse(render_unit(options(False, tmp_path, env_file=True)))
    service = unit["Service"]
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]
    assert service["ExecStart"] == [f"{DJCTL} up --foreground"]
    assert service["WorkingDirectory"] == [str(tmp_path / "app")]
    assert service["User"] == [getpass.getuser()]
    assert service["EnvironmentFile"] == [str(tmp_path / "djctl.env")]
    path = f"{DJCTL.parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert service["Environment"] == [f'"PATH={path}"']
    assert service["KillMode"] == ["mixed"] and service["Restart"] == ["on-failure"]
    assert int(service["TimeoutStopSec"][0]) > DEFAULT_GRACE_SECONDS
    assert service["WatchdogSec"] == ["30"] and service["RestartSec"] == ["5"]
    assert service["NoNewPrivileges"] == ["yes"] and service["ProtectSystem"] == ["full"]
    assert unit["Unit"]["Wants"] == unit["Unit"]["After"] == ["network-online.target"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_user_unit(tmp_path: Path) -> None:
    text = render_unit(options(True, tmp_path))
    unit = parse(text)
    assert "User" not in unit["Service"] and "EnvironmentFile" not in unit["Service"]
    assert unit["Service"]["Type"] == ["notify"] and unit["Service"]["KillMode"] == ["mixed"]
    for absent in ("ProtectSystem", "ProtectHome", "PrivateTmp"):
        assert absent not in unit["Service"]
    assert "After" not in unit["Unit"]
    assert unit["Install"]["WantedBy"] == ["default.target"]
    # The comment explaining a left-out line goes with it.
    assert "Secrets such as" not in text


def test_no_directive_is_rendered_empty(tmp_path: Path) -> None:
    for user in (False, True):
        for section in parse(render_unit(options(user, tmp_path))).values():
            assert all(value for values in section.values() for value in values)


@pytest.mark.parametrize("grace", [0, 30, 100.5])
def test_stop_timeout_outlasts_the_grace_period(grace: float, tmp_path: Path) -> None:
    unit = parse(render_unit(options(False, tmp_path, grace_seconds=grace)))
    assert int(unit["Service"]["TimeoutStopSec"][0]) > grace


@pytest.mark.parametrize(
    ("directory", "djctl", "home", "protect_home", "protect_system"),
    [
        ("/srv/app", "/opt/venv/bin/djctl", "/var/lib/app", ["yes"], ["full"]),
        ("/srv/app", "/opt/venv/bin/djctl", "/home/deploy", None, ["full"]),
        ("/home/deploy/app", "/home/deploy/app/.venv/bin/djctl", "/home/deploy", None, ["full"]),
        ("/srv/app", "/root/.local/bin/djctl", "/var/lib/app", None, ["full"]),
        ("/usr/local/app", "/usr/local/app/bin/djctl", "/var/lib/app", ["yes"], None),
    ],
)
def test_hardening_only_where_it_fits(directory: str, djctl: str, home: str,
                                      protect_home: list[str] | None, protect_system: list[str] | None) -> None:
    opts = UnitOptions(user=False, working_directory=Path(directory), exec_start=(djctl, "up", "--foreground"),
                       user_name="app", home=Path(home))
    service = parse(render_unit(opts))["Service"]
    assert service.get("ProtectHome") == protect_home
    assert service.get("ProtectSystem") == protect_system
    # Workers' wake-up sockets live in /tmp, shared with the application.
    assert "PrivateTmp" not in service


@pytest.mark.parametrize("bad", ['/srv/a"pp', "/srv/a\\pp", "/srv/a\npp", "relative/app"])
def test_paths_systemd_cannot_take_are_refused(bad: str) -> None:
    with pytest.raises(SystemdError, match="systemd cannot use the path"):
        UnitOptions(user=True, working_directory=Path(bad), exec_start=("/usr/bin/djctl",))


def test_unit_paths(tmp_path: Path) -> None:
    assert unit_path(False) == Path("/etc/systemd/system/djctl.service")
    config = tmp_path / "config"
    assert unit_path(True, environ={"XDG_CONFIG_HOME": str(config)}) == config / "systemd/user/djctl.service"
    assert unit_path(True, environ={}) == Path.home() / ".config/systemd/user/djctl.service"


@pytest.fixture
def app(tmp_path: Path) -> Path:
    directory = tmp_path / "app"
    directory.mkdir()
    return directory
