"""CI runs what the README tells a contributor to run, and every tier it names exists."""

from __future__ import annotations

import re

from tests.support.commands import ROOT


def readme_command() -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    return lines[lines.index(next(line for line in lines if line.startswith("# 2. "))) + 1]


def test_ci_runs_the_readmes_test_command() -> None:
    assert readme_command() in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_command_checks_the_shape_then_runs_every_tier() -> None:
    command = readme_command()
    assert re.search(r"ruff check .*&& .*lint-imports && .*mypy && .*pytest", command)
    for tier in ("unit", "integration", "acceptance", "chaos"):
        assert f"tests/{tier}" in command
        assert (ROOT / "tests" / tier / "__init__.py").exists()
