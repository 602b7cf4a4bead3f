"""``manage.py djctl_prune``: delete the results of finished Django tasks past their retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from djctl.contrib.django import compat


class Command(BaseCommand):
    help = "Delete finished Django task results older than the backend's RESULT_RETENTION (or --older-than)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--backend", default="default", help="The TASKS alias (default: default).")
        parser.add_argument("--older-than", type=float, metavar="SECONDS",
                            help="Keep results finished less than this many seconds ago.")

    def handle(self, *args: Any, **options: Any) -> None:
        from djctl.contrib.django.backend import DjctlBackend

        try:
            backend = compat.task_backends[options["backend"]]
        except Exception as e:  # noqa: BLE001 - Django raises its own configuration error here
            raise CommandError(f"no task backend {options['backend']!r} in TASKS: {e}", returncode=2) from None
        if not isinstance(backend, DjctlBackend):
            raise CommandError(f"task backend {options['backend']!r} is not djctl's DjctlBackend", returncode=2)
        older = options["older_than"]
        if older is not None and older < 0:
            raise CommandError("--older-than must be zero or more seconds", returncode=2)
        n = backend.prune(timedelta(seconds=older) if older is not None else None)
        self.stdout.write(f"Deleted {n} task result{'s' if n != 1 else ''}.")
