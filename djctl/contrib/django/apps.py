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
        from django.apps import apps

        from djctl.contrib.django import compat

        if compat.FRAMEWORK == "django_tasks" and not apps.is_installed("django_tasks"):
            # Django 6 checks every task backend itself; the backport only when its own
            # app is installed, which it need not be.
            checks.register(_check_backends)


def _check_backends(app_configs: Any = None, **kwargs: Any) -> list:
    from djctl.contrib.django import compat

    return [message for backend in compat.task_backends.all() for message in backend.check(**kwargs)]


def _upgrade_after_migrate(using: str, **_kwargs: Any) -> None:
    # The app's Django migration runs djctl's migrations once; a newer djctl brings more,
    # and every later `migrate` applies them.
    from djctl.contrib.django.schema import upgrade

    upgrade(using)
