"""The Django app: ``manage.py migrate`` brings djctl's tables up to date on the backends' databases."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


class DjctlConfig(AppConfig):
    name = "djctl.contrib.django"
    label = "djctl"
    verbose_name = "djctl"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from djctl import payload

        # Workers decode the job class that carries Django tasks.
        payload.register_module("djctl.contrib.django.job")
        post_migrate.connect(_upgrade_after_migrate, sender=self)
        checks.register(_check_backends)


def _check_backends(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list:
    # The tasks framework's own check (when it is registered at all: the backport's only
    # with its app installed) calls backend.check() without the databases being checked,
    # so the schema is checked here; the rest here only where that check is absent.
    from djctl.contrib.django import compat
    from djctl.contrib.django.backend import DjctlBackend

    registered = checks.registry.registry.registered_checks
    framework = any(getattr(check, "__name__", "") == "check_tasks" for check in registered)
    messages: list[checks.CheckMessage] = []
    for backend in compat.task_backends.all():
        if isinstance(backend, DjctlBackend):
            if framework:
                messages.extend(backend.check_schema(databases or ()))
            else:
                messages.extend(backend.check(databases=databases))
    return messages


def _upgrade_after_migrate(using: str, **_kwargs: Any) -> None:
    # The app's Django migration runs djctl's migrations once; a newer djctl brings more,
    # and every later `migrate` applies them.
    from djctl.contrib.django.schema import upgrade

    upgrade(using)
