"""``djctl systemd install | uninstall``: the supervisor as a systemd service."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.group()
def systemd() -> None:
    """Run the supervisor as a systemd service."""


@systemd.command("install")
@click.option("--user", "user_unit", is_flag=True, help="A user unit (~/.config/systemd/user) instead of a system one.")
@click.option("--dry-run", is_flag=True, help="Print the unit and the commands; write nothing.")
@click.option("--working-directory", type=click.Path(path_type=Path), help="The application's directory.")
@click.option("--env-file", type=click.Path(path_type=Path), help="An EnvironmentFile for the service.")
def systemd_install(user_unit: bool, dry_run: bool, working_directory: Path | None, env_file: Path | None) -> None:
    """Write the unit, reload systemd and enable it (or say what to run)."""
    from djctl.daemon.systemd import units as unit

    sys.exit(unit.systemd_install(user_unit, dry_run, working_directory, env_file, click.echo))


@systemd.command("uninstall")
@click.option("--user", "user_unit", is_flag=True, help="The user unit.")
@click.option("--dry-run", is_flag=True, help="Print what would be done.")
def systemd_uninstall(user_unit: bool, dry_run: bool) -> None:
    """Disable and remove the unit."""
    from djctl.daemon.systemd import units as unit

    sys.exit(unit.systemd_uninstall(user_unit, dry_run, click.echo))
