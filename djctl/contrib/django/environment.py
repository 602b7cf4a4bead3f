"""The environment a djctl command runs in for this Django project: its database and Django's setup."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping

from django.conf import settings

from djctl.contrib.django.database import url_for

BOOT = "djctl.contrib.django.boot"


def backend_database() -> str:
    """The Django database of the default task backend if it is djctl's, else of the first djctl backend."""
    tasks = getattr(settings, "TASKS", {}) or {}
    ordered = sorted(tasks.items(), key=lambda item: item[0] != "default")
    for _alias, params in ordered:
        if str(params.get("BACKEND", "")).startswith("djctl.contrib.django"):
            return str((params.get("OPTIONS") or {}).get("DATABASE", "default"))
    return "default"


def command_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with what djctl needs to work for this project.

    ``DJ_DATABASE_URL`` names the backend's database unless already set; ``DJ_APP`` starts
    with the boot module, so workers run ``django.setup()`` before importing anything else;
    ``PYTHONPATH`` holds the project, for processes started from another directory.
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("DJ_DATABASE_URL", url_for(backend_database()))
    apps = [a for a in env.get("DJ_APP", "").split(",") if a.strip() and a.strip() != BOOT]
    env["DJ_APP"] = ",".join([BOOT, *apps])
    paths = [*_project_paths(), os.getcwd(), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if settings.SETTINGS_MODULE:
        env.setdefault("DJANGO_SETTINGS_MODULE", settings.SETTINGS_MODULE)
    return env


def _project_paths() -> list[str]:
    """The folder holding the settings module's top package: where the project imports from."""
    module = settings.SETTINGS_MODULE
    if not module:
        return []
    spec = importlib.util.find_spec(module.partition(".")[0])
    if spec is None or not spec.submodule_search_locations:
        return []
    return [os.path.dirname(os.path.abspath(location)) for location in spec.submodule_search_locations]
