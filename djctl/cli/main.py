"""``djctl``: the command group; each command a thin call into the core and the wings."""

from __future__ import annotations

import os

import click

from djctl.cli import console, control, find, jobs, logs, schedules, supervisor, systemd
from djctl.cli.base import Group


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--database-url", envvar=None, help="Database URL (else DJ_DATABASE_URL, DATABASE_URL, [tool.djctl]).")
@click.option("--app", help="Application packages, comma-separated (else DJ_APP).")
@click.option("-C", "directory", metavar="DIR", type=click.Path(exists=True, file_okay=False),
              help="Run as if djctl was started in DIR (its Procfile, pyproject.toml, .djctl, database).")
@click.version_option(package_name="djctl")
@click.pass_context
def main(ctx: click.Context, database_url: str | None, app: str | None, directory: str | None) -> None:
    """delayed_job for Python: a job queue in your database, a supervisor and a console."""
    if directory is not None:
        os.chdir(directory)
    ctx.obj = {"database_url": database_url, "app": app}


for command in (jobs.work, jobs.workoff, jobs.clear, jobs.retry, jobs.stats, find.jobs, find.show, jobs.db,
                jobs.demo, jobs.bench, schedules.schedules, schedules.unschedule, logs.logs, console.top,
                systemd.systemd, *control.COMMANDS):
    main.add_command(command)
supervisor.register(main)
