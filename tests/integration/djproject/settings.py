"""A Django project for djctl's Django tests: its databases come from DJCTL_TEST_DJANGO_DATABASES.

That variable is a JSON object of Django alias -> djctl database URL; each alias gets a
task backend of the same name on it ("default" is the default backend).
"""

import json
import os

import pymysql
from sqlalchemy.engine import make_url

# Django's MySQL backend wants mysqlclient, which needs a C toolchain to install; PyMySQL
# (djctl's own MySQL driver) stands in for it, with the version Django checks for.
pymysql.version_info = (2, 2, 1, "final", 0)
pymysql.install_as_MySQLdb()

SECRET_KEY = "djctl-tests"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["djctl.contrib.django", "tests.integration.djproject.shop"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_ENGINES = {"sqlite": "django.db.backends.sqlite3", "postgresql": "django.db.backends.postgresql",
            "mysql": "django.db.backends.mysql", "mariadb": "django.db.backends.mysql"}


def django_database(url: str) -> dict:
    """Django's DATABASES entry for a djctl database URL."""
    parsed = make_url(url)
    engine = _ENGINES[parsed.get_backend_name()]
    if engine.endswith("sqlite3"):
        return {"ENGINE": engine, "NAME": parsed.database}
    return {"ENGINE": engine, "NAME": parsed.database, "USER": parsed.username or "",
            "PASSWORD": parsed.password or "", "HOST": parsed.host or "", "PORT": str(parsed.port or "")}


_urls = json.loads(os.environ.get("DJCTL_TEST_DJANGO_DATABASES") or '{"default": "sqlite:///django-tests.sqlite3"}')
DATABASES = {alias: django_database(url) for alias, url in _urls.items()}
TASKS = {
    alias: {
        "BACKEND": "djctl.contrib.django.DjctlBackend",
        "QUEUES": ["default", "mail", "other"],
        "OPTIONS": {"DATABASE": alias, "RESULT_RETENTION": 3600},
    }
    for alias in _urls
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {name: {"handlers": ["console"], "level": "INFO"} for name in ("django_tasks", "django.tasks")},
}
