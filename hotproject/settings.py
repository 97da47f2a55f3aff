"""Settings of the standalone project. Everything comes from the environment (hotproject/env.py).

Embedded default (nothing set): SQLite file under HOT_DATA_DIR, in-process Celery broker,
in-memory channel layer. Production: DATABASE_URL=postgres://… and REDIS_URL=redis://….
"""

from pathlib import Path

from hotapp.conf import DEFAULTS as HOT_DEFAULTS
from hotapp.conf import redis_channel_layer
from hotproject.env import (
    database_from_url,
    env_bool,
    env_float,
    env_int,
    env_json,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("HOT_DATA_DIR", str(BASE_DIR / ".hot")))

DEBUG = env_bool("HOT_DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "hot-dev-insecure-key-set-SECRET_KEY-in-production")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS") or ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "hotapp",
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

ROOT_URLCONF = "hotproject.urls"
ASGI_APPLICATION = "hotproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The project's own templates (its login page); the app's live inside hotapp/.
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

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL)}
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("HOT_SQLITE_PATH", str(DATA_DIR / "hot.sqlite3")),
            "OPTIONS": {
                # WAL lets the dashboard read while the in-process worker writes; IMMEDIATE
                # takes the write lock at BEGIN so two writers queue instead of deadlocking.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS: list[dict] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
# A failed CSRF check under Hot's API answers in JSON; elsewhere Django's own page.
CSRF_FAILURE_VIEW = "hotapp.auth.csrf_failure"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery: the broker is only a doorbell carrying run ids; the database is the source of truth.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Celery's Django fix-up closes every database connection before and after each task unless
# this is set, which costs a new connection per run (~2.5x throughput). A connection that dies
# is dropped and reopened by runtime.db.with_db_retry instead.
CELERY_DB_REUSE_MAX = 1_000_000
# A lost doorbell is recovered by the sweeper, so publishing gives up fast rather than
# holding a web request for long while the broker is down.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}

# Hot's own settings, each from its HOT_* variable over the default in hotapp/conf.py. Numbers
# out of range stop start-up with an error naming the variable (hotproject/env.py).
_RETRY_MIN_DELAY_MS = env_int(
    "HOT_RETRY_MIN_DELAY_MS", HOT_DEFAULTS["RETRY_MIN_DELAY_MS"], minimum=0
)
HOT = {
    "MAX_PAYLOAD_BYTES": env_int(
        "HOT_MAX_PAYLOAD_BYTES", HOT_DEFAULTS["MAX_PAYLOAD_BYTES"], minimum=1
    ),
    "RUN_LEASE_SECONDS": env_float(
        "HOT_RUN_LEASE_SECONDS", HOT_DEFAULTS["RUN_LEASE_SECONDS"], above=0
    ),
    "MAX_RECOVERIES": env_int("HOT_MAX_RECOVERIES", HOT_DEFAULTS["MAX_RECOVERIES"], minimum=0),
    "REQUEUE_AFTER_SECONDS": env_float(
        "HOT_REQUEUE_AFTER_SECONDS", HOT_DEFAULTS["REQUEUE_AFTER_SECONDS"], minimum=0
    ),
    "CANCEL_GRACE_SECONDS": env_float(
        "HOT_CANCEL_GRACE_SECONDS", HOT_DEFAULTS["CANCEL_GRACE_SECONDS"], minimum=0
    ),
    "SWEEP_INTERVAL_SECONDS": env_float(
        "HOT_SWEEP_INTERVAL_SECONDS", HOT_DEFAULTS["SWEEP_INTERVAL_SECONDS"], above=0
    ),
    "CLAIM_BATCH": env_int("HOT_CLAIM_BATCH", HOT_DEFAULTS["CLAIM_BATCH"], minimum=1, maximum=1000),
    "HANDLER_MODULES": env_list("HOT_HANDLER_MODULES"),
    "TASK_QUEUE": env_str("HOT_TASK_QUEUE", HOT_DEFAULTS["TASK_QUEUE"]),
    "TASK_POLL_SECONDS": env_float(
        "HOT_TASK_POLL_SECONDS", HOT_DEFAULTS["TASK_POLL_SECONDS"], above=0
    ),
    "TRACE": env_bool("HOT_TRACE", HOT_DEFAULTS["TRACE"]),
    "TRACE_INCLUDE": env_list("HOT_TRACE_INCLUDE"),
    "TRACE_EXCLUDE": env_list("HOT_TRACE_EXCLUDE"),
    "TRACE_MAX_SPANS": env_int("HOT_TRACE_MAX_SPANS", HOT_DEFAULTS["TRACE_MAX_SPANS"], minimum=0),
    "TRACE_MAX_BYTES": env_int("HOT_TRACE_MAX_BYTES", HOT_DEFAULTS["TRACE_MAX_BYTES"], minimum=0),
    "TRACE_VALUE_CHARS": env_int(
        "HOT_TRACE_VALUE_CHARS", HOT_DEFAULTS["TRACE_VALUE_CHARS"], minimum=10
    ),
    "RETRY_MAX_ATTEMPTS": env_int(
        "HOT_RETRY_MAX_ATTEMPTS", HOT_DEFAULTS["RETRY_MAX_ATTEMPTS"], minimum=0
    ),
    "RETRY_MAX_DELAY_MS": env_int(
        "HOT_RETRY_MAX_DELAY_MS", HOT_DEFAULTS["RETRY_MAX_DELAY_MS"], minimum=_RETRY_MIN_DELAY_MS
    ),
    "RETRY_MIN_DELAY_MS": _RETRY_MIN_DELAY_MS,
    # 0 keeps everything forever; fractions of a day are allowed (bench/retention_soak.py).
    "RETENTION_DAYS": env_float("HOT_RETENTION_DAYS", HOT_DEFAULTS["RETENTION_DAYS"], minimum=0),
    "PURGE_BATCH": env_int("HOT_PURGE_BATCH", HOT_DEFAULTS["PURGE_BATCH"], minimum=1, maximum=5000),
    "PURGE_MAX_BATCHES": env_int(
        "HOT_PURGE_MAX_BATCHES", HOT_DEFAULTS["PURGE_MAX_BATCHES"], minimum=1
    ),
    "PURGE_INTERVAL_SECONDS": env_float(
        "HOT_PURGE_INTERVAL_SECONDS", HOT_DEFAULTS["PURGE_INTERVAL_SECONDS"], above=0
    ),
    # A comma-separated list replaces the default list; unset keeps it.
    "MASK_KEYS": env_list("HOT_MASK_KEYS") or HOT_DEFAULTS["MASK_KEYS"],
    "METRICS_TOKEN": env_str("HOT_METRICS_TOKEN") or None,
    "METRICS_SETTLE_SECONDS": env_float(
        "HOT_METRICS_SETTLE_SECONDS", HOT_DEFAULTS["METRICS_SETTLE_SECONDS"], minimum=0
    ),
    "OTEL_EXPORT": env_bool("HOT_OTEL_EXPORT", HOT_DEFAULTS["OTEL_EXPORT"]),
    "ALERT_CHANNELS": env_json("HOT_ALERT_CHANNELS", HOT_DEFAULTS["ALERT_CHANNELS"]),
    "ALERT_BASE_URL": env_str("HOT_ALERT_BASE_URL", HOT_DEFAULTS["ALERT_BASE_URL"]),
    "ALERT_RATE_LIMIT": env_int(
        "HOT_ALERT_RATE_LIMIT", HOT_DEFAULTS["ALERT_RATE_LIMIT"], minimum=1
    ),
    "ALERT_RATE_WINDOW_SECONDS": env_float(
        "HOT_ALERT_RATE_WINDOW_SECONDS", HOT_DEFAULTS["ALERT_RATE_WINDOW_SECONDS"], above=0
    ),
    "ALERT_TIMEOUT_SECONDS": env_float(
        "HOT_ALERT_TIMEOUT_SECONDS", HOT_DEFAULTS["ALERT_TIMEOUT_SECONDS"], above=0
    ),
    "ALERT_MAX_ATTEMPTS": env_int(
        "HOT_ALERT_MAX_ATTEMPTS", HOT_DEFAULTS["ALERT_MAX_ATTEMPTS"], minimum=1
    ),
    "ALERT_RETRY_DELAY_SECONDS": env_float(
        "HOT_ALERT_RETRY_DELAY_SECONDS", HOT_DEFAULTS["ALERT_RETRY_DELAY_SECONDS"], minimum=0
    ),
    "ALERT_QUEUE": env_str("HOT_ALERT_QUEUE") or None,
    "ALERT_FROM_EMAIL": env_str("HOT_ALERT_FROM_EMAIL") or None,
}

# Alert mails (HOT_ALERT_CHANNELS with "email") go through Django's mail: SMTP at EMAIL_HOST.
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "hot@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "hot": {"handlers": ["console"], "level": env_str("HOT_LOG_LEVEL", "INFO")},
    },
}
