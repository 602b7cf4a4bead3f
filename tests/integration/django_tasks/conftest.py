"""Django's tasks framework on djctl: the fixtures of tests/integration/djproject/harness.py."""

from tests.integration.djproject.harness import django_db, worker_factory

__all__ = ["django_db", "worker_factory"]
