"""``manage.py djctl <command>``: any djctl command, with this project's database and Django set up in workers."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from djctl.contrib.django.database import UnsupportedDatabase
from djctl.contrib.django.environment import command_environment


class Command(BaseCommand):
    help = "Run a djctl command for this project: up, down, ps, logs, work, top, stats... (see `djctl --help`)."
    requires_system_checks = ()

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("args", nargs="*", help="The djctl command and its arguments.")

    def run_from_argv(self, argv: list[str]) -> None:
        # Every argument is djctl's (its --help included), so Django's parser sees none;
        # the process becomes djctl, so signals and exit codes are djctl's own.
        args = argv[2:]
        env = self._environment()
        os.execvpe(sys.executable, [sys.executable, "-m", "djctl", *args], env)

    def handle(self, *args: str, **options: Any) -> None:
        done = subprocess.run([sys.executable, "-m", "djctl", *args], env=self._environment(), check=False)
        if done.returncode:
            raise CommandError(f"djctl {' '.join(args)} exited with {done.returncode}", returncode=done.returncode)

    def _environment(self) -> dict[str, str]:
        try:
            return command_environment()
        except UnsupportedDatabase as e:
            raise CommandError(str(e), returncode=2) from None
