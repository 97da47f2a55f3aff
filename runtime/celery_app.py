"""The Celery app. Configured from Django settings (CELERY_*); its tasks are in runtime/celery_tasks.py."""

from celery import Celery

app = Celery("hot", include=["runtime.celery_tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
