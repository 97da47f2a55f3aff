# Celery's Django pattern: the app is loaded with Django, so shared tasks bind to it.
from shop.celery import app as celery_app

__all__ = ("celery_app",)
