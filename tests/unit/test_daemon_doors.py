"""The console and the supervisor commands reach a running supervisor only through
djctl.daemon.client: none of them imports the supervisor's files, log or socket."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "djctl"
PRIVATE = ("djctl.daemon.paths", "djctl.daemon.logs", "djctl.daemon.control")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_front_ends_use_only_the_client():
    front_ends = [*sorted((ROOT / "tui").glob("*.py")), ROOT / "cli" / "supervisor.py"]
    offending = {str(p.relative_to(ROOT)): sorted(n for n in imported(p) if n.startswith(PRIVATE))
                 for p in front_ends}
    assert {k: v for k, v in offending.items() if v} == {}
    assert any("djctl.daemon.client" in imported(p) for p in front_ends)
