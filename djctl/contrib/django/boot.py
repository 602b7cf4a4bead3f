"""``--app djctl.contrib.django.boot``: Django set up (``DJANGO_SETTINGS_MODULE``) before the application is imported.

``manage.py djctl`` names it first among a worker's application packages, so a worker
and its executor child run tasks with Django's settings, apps and models loaded.
"""

import django
from django.apps import apps

if not apps.ready:
    django.setup()
