"""djctl as Django's tasks backend, and a Django app that creates djctl's tables.

    INSTALLED_APPS = [..., "djctl.contrib.django"]
    TASKS = {"default": {"BACKEND": "djctl.contrib.django.DjctlBackend"}}

Works with Django 6's ``django.tasks`` and with the ``django-tasks`` backport on
Django 5.2. Importing this package needs neither: the backend loads on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DjctlBackend"]


def __getattr__(name: str) -> Any:
    # Django imports an app's package while it populates the registry: the backend (and
    # the tasks framework it needs) load only when TASKS names it.
    if name == "DjctlBackend":
        from djctl.contrib.django.backend import DjctlBackend

        return DjctlBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
