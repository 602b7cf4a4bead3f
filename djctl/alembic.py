"""Keeping djctl's tables out of an application's Alembic autogenerate.

djctl creates and migrates its own tables (``djctl db upgrade``); an application's
Alembic environment that compares its models with the database would otherwise
propose dropping them. In the app's ``alembic/env.py``::

    import djctl.alembic

    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=djctl.alembic.include_name,
        include_object=djctl.alembic.include_object,
    )

An app with filters of its own combines them: ``include_object=lambda *a:
djctl.alembic.include_object(*a) and mine(*a)``. Both helpers are pure functions of
Alembic's documented hook arguments; this module does not import Alembic itself.
"""

from __future__ import annotations

from typing import Any

from djctl.queue.migrations import version_metadata
from djctl.queue.schema import metadata

TABLES: frozenset[str] = frozenset({*metadata.tables, *version_metadata.tables})
"""Every table djctl owns: ``delayed_jobs``, ``djctl_processes`` and its version table."""


def _djctl_name(name: str | None) -> bool:
    return name is not None and (name in TABLES or name.startswith("djctl_"))


def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Alembic's ``include_name`` hook: False for djctl's tables and everything on them."""
    if type_ == "table":
        return not _djctl_name(name)
    if type_ in ("column", "index", "unique_constraint", "foreign_key_constraint"):
        return not _djctl_name(parent_names.get("table_name"))
    return True


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's ``include_object`` hook: False for djctl's tables and everything on them."""
    if type_ == "table":
        return not _djctl_name(name)
    table = getattr(obj, "table", None)
    return not _djctl_name(getattr(table, "name", None))
