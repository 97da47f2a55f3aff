"""The shop's own Celery app (Celery's Django pattern); Hot publishes through it too
(HOT["CELERY_APP"] in settings), and `celery -A shop worker` runs Hot's runs."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
