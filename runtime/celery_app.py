"""The Celery app. Configured from Django settings (CELERY_*); its tasks are in runtime/tasks.py."""

from celery import Celery

app = Celery("hot", include=["runtime.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
