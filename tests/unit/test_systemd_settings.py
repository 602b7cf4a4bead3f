"""Issue 12 point 10: ``djctl systemd install`` names every setting of this shell and
command line that the service would not see."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from djctl.cli import main as cli
from djctl.daemon.systemd.install import environment_hints


def test_every_dj_setting_missing_from_the_service_is_named() -> None:
    environ = {"DJ_APP": "photos", "DJ_DATABASE_URL": "postgresql://app@db/app", "DJ_GRACE_PERIOD": "5",
               "HOME": "/home/me"}
    assert environment_hints(None, environ) == [
        ("the service will not see DJ_DATABASE_URL, DJ_APP, DJ_GRACE_PERIOD from this shell; "
         "put them in a file (chmod 600) and pass --env-file")]


def test_an_env_file_that_lacks_some_settings(tmp_path: Path) -> None:
    env_file = tmp_path / "djctl.env"
    env_file.write_text("DJ_DATABASE_URL=postgresql://app@db/app\n")
    env_file.chmod(0o600)
    environ = {"DJ_APP": "photos", "DJ_DATABASE_URL": "postgresql://app@db/app"}
    assert environment_hints(env_file, environ) == [
        f"the service will not see DJ_APP from this shell; add it to {env_file}"]
    env_file.write_text("DJ_DATABASE_URL=postgresql://app@db/app\nDJ_APP=photos\n")
    assert environment_hints(env_file, environ) == []


def test_the_command_line_flags_are_named_too(tmp_path: Path) -> None:
    env = {name: None for name in os.environ if name.startswith("DJ_") or name == "DATABASE_URL"}
    env["DJ_APP"] = "photos"
    result = CliRunner().invoke(cli.main, ["--app", "photos", "--database-url", "sqlite:///x.sqlite3",
                                           "systemd", "install", "--user", "--dry-run",
                                           "--working-directory", str(tmp_path)], env=env)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        ("djctl: note: the service will not see DJ_APP from this shell; put it in a file (chmod 600) and pass "
         "--env-file"),
        ("djctl: note: the service will not see --app, --database-url given here; set DJ_APP, DJ_DATABASE_URL "
         "in the env file (--env-file)")]
