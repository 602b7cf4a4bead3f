"""A small shop whose receipts are Django tasks run by djctl.

The database is SQLite next to this file unless SHOP_DATABASE_URL names another
(postgresql://user@host/db or mysql://user@host/db).
"""

import os
from pathlib import Path

from sqlalchemy.engine import make_url

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("SHOP_SECRET_KEY", "an-example-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "shopsite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["djctl.contrib.django", "shop"]


def _database(url: str) -> dict:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.database}
    if backend in ("mysql", "mariadb"):
        try:
            import MySQLdb  # noqa: F401 - mysqlclient, Django's own MySQL driver
        except ImportError:
            import pymysql  # djctl's MySQL driver stands in, with the version Django asks for

            pymysql.version_info = (2, 2, 1, "final", 0)
            pymysql.install_as_MySQLdb()
    engine = {"postgresql": "django.db.backends.postgresql"}.get(backend, "django.db.backends.mysql")
    return {"ENGINE": engine, "NAME": parsed.database, "USER": parsed.username or "",
            "PASSWORD": parsed.password or "", "HOST": parsed.host or "", "PORT": str(parsed.port or "")}


DATABASES = {"default": _database(os.environ.get("SHOP_DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"))}

TASKS = {
    "default": {
        "BACKEND": "djctl.contrib.django.DjctlBackend",
        "QUEUES": ["default", "mail"],
        "OPTIONS": {"MAX_ATTEMPTS": 5, "RESULT_RETENTION": 7 * 24 * 3600},
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {name: {"handlers": ["console"], "level": "INFO"} for name in ("django.tasks", "django_tasks")},
}
