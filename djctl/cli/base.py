"""What every command needs: the error convention, the settings in force, the connection.

Usage errors exit 2, other failures 1; either way one line on stderr says what is wrong.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from djctl import config, dburl
from djctl.errors import one_line as _first_line

# SQLAlchemy, the drivers and djctl's queue modules are imported inside the functions
# that reach the database: `djctl ps`, `scale`, `down`, `restart`, `logs` and `--help`
# never import them (issue 20; tests/acceptance/test_startup_imports.py).


class Failure(click.ClickException):
    """A command failed for a reason other than its usage: exit 1, one line."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"djctl: {self.format_message()}", err=True)


class UsageFailure(Failure):
    exit_code = 2


def settings(ctx: click.Context, **flags: Any) -> config.Settings:
    """Settings from the global flags and ``flags``, put in force for this process."""
    try:
        # A command's own option left unset (None) must not hide the global one (--app).
        given = {k: v for k, v in flags.items() if v is not None}
        s = config.load_settings({**ctx.find_root().obj, **given})
        dburl.parse(s.database_url)
    except config.ConfigError as e:
        raise UsageFailure(str(e)) from None
    config.set_current(s)
    return s


def connect(s: config.Settings, create: bool = True):
    """The engine, its schema current; a database that does not answer is one clear line.
    Without ``create``, a SQLite file that does not exist is a failure (a command that
    only reads must not leave an empty database behind in the wrong directory)."""
    from sqlalchemy.exc import DBAPIError

    from djctl import api
    from djctl.queue import engines as store

    if not create:
        _must_exist(s)
    try:
        eng = api.engine(s.database_url)
    except DBAPIError as e:
        url = store.describe(store.normalize_url(s.database_url))
        raise Failure(f"cannot connect to {url}: {_first_line(e)}") from None
    return eng


def warn_if_other_database(s: config.Settings, ps_reply: dict) -> None:
    """Say so when this directory's supervisor (its ``ps`` reply) works on another
    database than this command's settings name: what is enqueued or counted here is not
    what its workers see."""
    theirs = ps_reply.get("supervisor", {}).get("database")
    ours = dburl.parse(s.database_url).identity(Path.cwd())
    if theirs and theirs != ours:
        click.echo(f"djctl: warning: the supervisor here works on {theirs}, but this command's settings name "
                   f"{ours}: jobs enqueued with these settings are not its workers'; set DJ_DATABASE_URL "
                   "(or --database-url) alike", err=True)


def check_supervisor_database(s: config.Settings) -> None:
    """:func:`warn_if_other_database` for a command that does not otherwise talk to the
    supervisor; silent when none runs here."""
    from djctl.daemon.client import ControlError, NotRunning, SupervisorClient

    try:
        reply = SupervisorClient(s.state_dir).request("ps")
    except (NotRunning, ControlError, OSError, ValueError):  # none here, or it broke mid-way: no word
        return
    warn_if_other_database(s, reply)


def _must_exist(s: config.Settings) -> None:
    url = dburl.parse(s.database_url)
    if url.backend != "sqlite":
        return
    assert url.database is not None  # dburl.parse refuses a SQLite URL without a file
    path = os.path.abspath(url.database)
    if not os.path.exists(path):
        raise Failure(f"no database here: {path} does not exist; run djctl in your app's directory "
                      f"(or djctl -C DIR), or point at one with --database-url or DJ_DATABASE_URL")


def import_app(s: config.Settings) -> None:
    """Import the application packages, so their jobs (and decorators) are known."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in s.app:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UsageFailure(f"cannot import application package {name!r} (--app / DJ_APP): {e}") from None


def _one_line(e: click.UsageError) -> click.ClickException:
    """click's usage block as one line: what is wrong, and where to read more."""
    if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        return e  # a bare `djctl`: the help is the answer
    where = e.ctx.command_path if e.ctx is not None else "djctl"
    return UsageFailure(f"{e.format_message()} (see '{where} --help')")


class Group(click.Group):
    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            raise _one_line(e) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except dburl.DatabaseFileError as e:
            raise Failure(str(e)) from None
        except config.ConfigError as e:  # a setting found wrong only once used (a driver not installed)
            raise UsageFailure(str(e)) from None
        except click.UsageError as e:
            raise _one_line(e) from None
        except Exception as e:
            if _is_database_error(e):
                raise Failure(f"database error: {_first_line(e)}") from None
            raise


def _is_database_error(e: Exception) -> bool:
    """A driver's error, reported by SQLAlchemy; a command that never imported
    SQLAlchemy cannot have one, and is not made to import it to find out."""
    exc = sys.modules.get("sqlalchemy.exc")
    return exc is not None and isinstance(e, exc.DBAPIError)
