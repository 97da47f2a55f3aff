"""The Celery app, configured from Django settings (CELERY_*); tasks: runtime/celery_tasks.py."""

from celery import Celery

app = Celery("hot", include=["runtime.celery_tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
