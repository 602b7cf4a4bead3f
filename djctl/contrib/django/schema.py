"""djctl's tables in Django's databases, created and upgraded by djctl's own migrations."""

from __future__ import annotations

from django.conf import settings

from djctl.contrib.django.database import url_for
from djctl.queue import engines as store
from djctl.queue import migrations


def databases() -> set[str]:
    """The Django database aliases that a ``DjctlBackend`` in ``TASKS`` uses."""
    used = set()
    for params in getattr(settings, "TASKS", {}).values():
        if str(params.get("BACKEND", "")).startswith("djctl.contrib.django"):
            used.add(str((params.get("OPTIONS") or {}).get("DATABASE", "default")))
    return used


def upgrade(alias: str) -> list[migrations.Migration]:
    """Apply djctl's pending migrations to Django's database ``alias``, if a djctl backend uses it."""
    if alias not in databases():
        return []
    engine = store.make_engine(url_for(alias), pool_size=1)
    try:
        return migrations.upgrade(engine)
    finally:
        engine.dispose()
