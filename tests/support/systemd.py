"""Units as the tests read them: rendered options for an app directory, and a parser
that gives a unit's directives by section. No tests here."""

from __future__ import annotations

from pathlib import Path

import pytest

from djctl.daemon.systemd.install import find_djctl, unit_options
from djctl.daemon.systemd.units import UnitOptions

DJCTL = find_djctl()
needs_djctl = pytest.mark.skipif(DJCTL is None, reason="the djctl script is not installed")


def parse(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit's directives by section; a key may repeat, as systemd allows."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def options(user: bool, tmp_path: Path, env_file: bool = False, **overrides: object) -> UnitOptions:
    """The unit options ``djctl systemd install`` would use for an app in ``tmp_path/app``."""
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    env = None
    if env_file:
        env = tmp_path / "djctl.env"
        env.write_text("DJ_DATABASE_URL=sqlite:////srv/app/jobs.sqlite3\n")
    opts = unit_options(user, app, env, djctl=DJCTL, environ={})
    return UnitOptions(**{**opts.__dict__, **overrides})
