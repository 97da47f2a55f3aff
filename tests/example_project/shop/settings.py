"""The shop's settings: its own apps and user model, with Hot added."""

import os
from pathlib import Path
from urllib.parse import urlparse

from hotapp.conf import redis_channel_layer

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("SECRET_KEY", "shop-insecure-test-key")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Hot and what its pages use.
    "channels",
    "django_htmx",
    "template_partials",
    "hotapp",
    # The shop's own apps.
    "accounts",
    "orders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "shop.urls"
ASGI_APPLICATION = "shop.asgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_REDIRECT_URL = "/hot/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

db = urlparse(os.environ["DATABASE_URL"])
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": db.path.lstrip("/"),
        "USER": db.username or "",
        "PASSWORD": db.password or "",
        "HOST": db.hostname or "",
        "PORT": db.port or "",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "static"

REDIS_URL = os.environ["REDIS_URL"]
CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}

CELERY_BROKER_URL = REDIS_URL
# Celery's Django fix-up would close the database connection around every task otherwise.
CELERY_DB_REUSE_MAX = 1_000_000

HOT = {"CELERY_APP": "shop.celery.app"}
