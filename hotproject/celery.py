"""Entry point for `celery -A hotproject worker`: set Django up, then hand over Hot's app."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotproject.settings")
django.setup()

from runtime.celery_app import app  # noqa: E402  (needs Django set up first)

__all__ = ["app"]
