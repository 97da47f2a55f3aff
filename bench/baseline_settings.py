"""Settings for the plain-Celery baseline of bench/workflow.py: Hot's settings plus
django-celery-results, so the baseline stores results in the same PostgreSQL."""

from hotproject.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "django_celery_results"]  # noqa: F405
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = False
