"""Settings for Hot. Everything comes from the environment (hotapp/env.py).

Embedded default (nothing set): SQLite file under HOT_DATA_DIR, in-process Celery broker,
in-memory channel layer. Production: DATABASE_URL=postgres://… and REDIS_URL=redis://….
"""

from pathlib import Path

from hotapp.env import database_from_url, env_bool, env_float, env_int, env_list, env_str

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

ROOT_URLCONF = "hotapp.urls"
ASGI_APPLICATION = "hotapp.asgi.application"

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
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
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

# Hot's own knobs (docs/architecture.md lists them). Numbers out of range stop start-up with
# an error naming the variable (hotapp/env.py).
_RETRY_MIN_DELAY_MS = env_int("HOT_RETRY_MIN_DELAY_MS", 100, minimum=0)
HOT = {
    # Largest accepted event payload or run result, as encoded JSON.
    "MAX_PAYLOAD_BYTES": env_int("HOT_MAX_PAYLOAD_BYTES", 1024 * 1024, minimum=1),
    # A running run's lease; the worker renews it (every third of this, at most 2 s apart)
    # while the handler runs.
    "RUN_LEASE_SECONDS": env_float("HOT_RUN_LEASE_SECONDS", 60.0, above=0),
    # How many times a run whose worker died is re-queued before it is failed (WorkerLost).
    "MAX_RECOVERIES": env_int("HOT_MAX_RECOVERIES", 3, minimum=0),
    # A queued run whose doorbell is older than this is re-enqueued by the sweeper.
    "REQUEUE_AFTER_SECONDS": env_float("HOT_REQUEUE_AFTER_SECONDS", 30.0, minimum=0),
    # How long a running run may ignore a cancel request before it is marked cancelled anyway.
    "CANCEL_GRACE_SECONDS": env_float("HOT_CANCEL_GRACE_SECONDS", 30.0, minimum=0),
    # Pause between two sweeps.
    "SWEEP_INTERVAL_SECONDS": env_float("HOT_SWEEP_INTERVAL_SECONDS", 5.0, above=0),
    # Most queued runs one worker claims, runs and commits together (fewer while handlers are
    # slow); 1 turns batching off. At most 1000: a batch's outcomes are one UPDATE binding ten
    # parameters a run (PostgreSQL allows 65,535).
    "CLAIM_BATCH": env_int("HOT_CLAIM_BATCH", 20, minimum=1, maximum=1000),
    # Extra modules holding handlers, beside each installed app's `handlers` module.
    "HANDLER_MODULES": env_list("HOT_HANDLER_MODULES"),
    # The Celery queue of task attempts; `hot worker -Q hot.tasks` consumes it.
    "TASK_QUEUE": env_str("HOT_TASK_QUEUE", "hot.tasks"),
    # How often `receive()` looks at a task's inbox while it waits.
    "TASK_POLL_SECONDS": env_float("HOT_TASK_POLL_SECONDS", 0.1, above=0),
    # Execution traces: on for every handler unless switched off here or per handler.
    "TRACE": env_bool("HOT_TRACE", True),
    # Module prefixes that count as user code even in site-packages, or never do.
    "TRACE_INCLUDE": env_list("HOT_TRACE_INCLUDE"),
    "TRACE_EXCLUDE": env_list("HOT_TRACE_EXCLUDE"),
    # Per-run caps; past either, calls are counted but not recorded (the trace says truncated).
    "TRACE_MAX_SPANS": env_int("HOT_TRACE_MAX_SPANS", 5000, minimum=0),
    "TRACE_MAX_BYTES": env_int("HOT_TRACE_MAX_BYTES", 1024 * 1024, minimum=0),
    # Longest shown value (argument, return value, exception message).
    "TRACE_VALUE_CHARS": env_int("HOT_TRACE_VALUE_CHARS", 200, minimum=10),
    # Retry clamps, as Hot's HOT_RETRY_* settings.
    "RETRY_MAX_ATTEMPTS": env_int("HOT_RETRY_MAX_ATTEMPTS", 10, minimum=0),
    "RETRY_MAX_DELAY_MS": env_int("HOT_RETRY_MAX_DELAY_MS", 3_600_000, minimum=_RETRY_MIN_DELAY_MS),
    "RETRY_MIN_DELAY_MS": _RETRY_MIN_DELAY_MS,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "hot": {"handlers": ["console"], "level": env_str("HOT_LOG_LEVEL", "INFO")},
    },
}
