"""``djctl systemd install | uninstall``: the supervisor as a systemd service."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import click

from djctl.cli import base as cli

Echo = Callable[[str], None]


@click.group()
def systemd() -> None:
    """Run the supervisor as a systemd service."""


@systemd.command("install")
@click.option("--user", "user_unit", is_flag=True, help="A user unit (~/.config/systemd/user) instead of a system one.")
@click.option("--dry-run", is_flag=True, help="Print the unit and the commands; write nothing.")
@click.option("--working-directory", type=click.Path(path_type=Path), help="The application's directory.")
@click.option("--env-file", type=click.Path(path_type=Path), help="An EnvironmentFile for the service.")
@click.pass_context
def systemd_install(ctx: click.Context, user_unit: bool, dry_run: bool, working_directory: Path | None,
                    env_file: Path | None) -> None:
    """Write the unit, reload systemd and enable it (or say what to run).

    The service sees neither this shell's environment nor this command line: a note names
    every setting (DJ_*, DATABASE_URL, --app, --database-url) it would miss; put them in
    a file (chmod 600) and pass --env-file."""
    install_unit(user_unit, dry_run, working_directory, env_file, click.echo, _stderr,
                 flags=ctx.find_root().obj or {})


@systemd.command("uninstall")
@click.option("--user", "user_unit", is_flag=True, help="The user unit.")
@click.option("--dry-run", is_flag=True, help="Print what would be done.")
def systemd_uninstall(user_unit: bool, dry_run: bool) -> None:
    """Disable and remove the unit."""
    uninstall_unit(user_unit, dry_run, click.echo)


def install_unit(user: bool, dry_run: bool, working_directory: Path | None, env_file: Path | None,
                 echo: Echo, note: Echo, *, unit_dir: Path | None = None,
                 run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                 environ: Mapping[str, str] | None = None,
                 flags: Mapping[str, str | None] | None = None) -> None:
    """`djctl systemd install`: each line of the outcome to ``echo``, notes to ``note``.
    Raises UsageFailure (exit 2) for bad input, Failure (exit 1) when installing fails."""
    from djctl.daemon.systemd import install

    try:
        opts = install.prepare(user, working_directory, env_file, environ)
        lines = install.install(opts, dry_run, run, unit_dir=unit_dir)
    except install.SystemdError as e:
        raise (cli.UsageFailure if e.usage else cli.Failure)(str(e)) from None
    for line in lines:
        echo(line)
    for hint in install.environment_hints(env_file, environ, flags):
        note(f"djctl: note: {hint}")


def uninstall_unit(user: bool, dry_run: bool, echo: Echo, *, unit_dir: Path | None = None,
                   run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> None:
    """`djctl systemd uninstall`: each line to ``echo``; Failure (exit 1) when removing fails."""
    from djctl.daemon.systemd import install

    try:
        lines = install.uninstall(user, dry_run, run, unit_dir=unit_dir)
    except install.SystemdError as e:
        raise (cli.UsageFailure if e.usage else cli.Failure)(str(e)) from None
    for line in lines:
        echo(line)


def _stderr(line: str) -> None:
    click.echo(line, err=True)
