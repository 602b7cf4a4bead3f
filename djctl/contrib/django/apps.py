"""The Django app: ``manage.py migrate`` brings djctl's tables up to date on the backends' databases."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
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


def _upgrade_after_migrate(using: str, **_kwargs: Any) -> None:
    # The app's Django migration runs djctl's migrations once; a newer djctl brings more,
    # and every later `migrate` applies them.
    from djctl.contrib.django.schema import upgrade

    upgrade(using)
