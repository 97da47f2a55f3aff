"""Hot's own settings: the `HOT` dict in a project's settings, over these defaults.

A project that adds Hot sets only what it changes (`HOT = {"CLAIM_BATCH": 50}`); the standalone
project fills every key from HOT_* environment variables (hotproject/settings.py).
"""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Largest accepted event payload or run result, as encoded JSON.
    "MAX_PAYLOAD_BYTES": 1024 * 1024,
    # A running run's lease; the worker renews it (every third of this, at most 2 s apart)
    # while the handler runs.
    "RUN_LEASE_SECONDS": 60.0,
    # How many times a run whose worker died is re-queued before it is failed (WorkerLost).
    "MAX_RECOVERIES": 3,
    # A queued run whose doorbell is older than this is re-enqueued by the sweeper.
    "REQUEUE_AFTER_SECONDS": 30.0,
    # How long a running run may ignore a cancel request before it is marked cancelled anyway.
    "CANCEL_GRACE_SECONDS": 30.0,
    # Pause between two sweeps.
    "SWEEP_INTERVAL_SECONDS": 5.0,
    # Most queued runs one worker claims, runs and commits together (fewer while handlers are
    # slow); 1 turns batching off. At most 1000: a batch's outcomes are one UPDATE binding ten
    # parameters a run (PostgreSQL allows 65,535).
    "CLAIM_BATCH": 20,
    # Extra modules holding handlers, beside each installed app's `handlers` module.
    "HANDLER_MODULES": [],
    # The Celery queue of task attempts; `hot worker -Q hot.tasks` consumes it.
    "TASK_QUEUE": "hot.tasks",
    # How often `receive()` looks at a task's inbox while it waits.
    "TASK_POLL_SECONDS": 0.1,
    # Execution traces: on for every handler unless switched off here or per handler.
    "TRACE": True,
    # Module prefixes that count as user code even in site-packages, or never do.
    "TRACE_INCLUDE": [],
    "TRACE_EXCLUDE": [],
    # Per-run caps; past either, calls are counted but not recorded (the trace says truncated).
    "TRACE_MAX_SPANS": 5000,
    "TRACE_MAX_BYTES": 1024 * 1024,
    # Longest shown value (argument, return value, exception message).
    "TRACE_VALUE_CHARS": 200,
    # A project's own Celery app, as a dotted path ("proj.celery.app"), to publish doorbells
    # through and run workers of; None: Hot's own (runtime.celery_app).
    "CELERY_APP": None,
    # Retry clamps, as Hot's HOT_RETRY_* settings.
    "RETRY_MAX_ATTEMPTS": 10,
    "RETRY_MAX_DELAY_MS": 3_600_000,
    "RETRY_MIN_DELAY_MS": 100,
    # Retention: finished runs (with their traces and audit entries), finished tasks and
    # events whose runs are gone are purged this many days after they finished (fractions
    # allowed). A handler's own `retention_days=` wins. None or 0: keep forever.
    "RETENTION_DAYS": 30,
    # Most chains, tasks or events one purge batch deletes (one short transaction each), and
    # most batches one scheduler pass runs; the rest waits for the next pass.
    "PURGE_BATCH": 500,
    "PURGE_MAX_BATCHES": 20,
    # Pause between two purge passes of the scheduler.
    "PURGE_INTERVAL_SECONDS": 300.0,
    # Keys whose values are never shown: masked in traces when recorded, and in payloads on
    # every page and API response (hotapp/masking.py). Matched by words, case-insensitively.
    "MASK_KEYS": [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "private_key",
        "card",
        "card_number",
        "cvv",
        "cvc",
        "ssn",
    ],
    # A shared secret Prometheus sends as `Authorization: Bearer <it>` to scrape /metrics
    # without a user; None: only API tokens and sessions with hotapp.view_run (hotapp/metrics.py).
    "METRICS_TOKEN": None,
    # How long after its finish an attempt's outcome may commit and still be counted by
    # /metrics; the counters and histograms lag by this much (hotapp/metrics.py).
    "METRICS_SETTLE_SECONDS": 10.0,
    # Export each finished run's trace as OpenTelemetry spans (needs the [otel] extra; the
    # exporter is configured by the standard OTEL_* environment variables; runtime/otel.py).
    "OTEL_EXPORT": False,
    # Failure alerts (runtime/alerts.py): where they go, a list of channel dicts, e.g.
    # {"name": "ops", "webhook": "https://…", "on": ["failed", "cancelled"]} or
    # {"name": "oncall", "email": ["a@example.com"], "functions": ["billing.*"]}.
    "ALERT_CHANNELS": [],
    # Scheme and host the links in alerts start with ("https://hot.example.com"); the dashboard's
    # own mount prefix follows from its URLs. Empty: links are paths only.
    "ALERT_BASE_URL": "",
    # At most this many failed/cancelled alerts per channel per window (a channel's own
    # "rate_limit" overrides); the rest are held back and counted in one summary.
    "ALERT_RATE_LIMIT": 10,
    "ALERT_RATE_WINDOW_SECONDS": 60,
    # One webhook POST or mail: how long it may take, how many tries, the first wait (doubling).
    "ALERT_TIMEOUT_SECONDS": 10.0,
    "ALERT_MAX_ATTEMPTS": 5,
    "ALERT_RETRY_DELAY_SECONDS": 10.0,
    # The Celery queue of hot.deliver_alerts; None: the default queue, beside the handlers.
    "ALERT_QUEUE": None,
    # The sender of alert mails; None: Django's DEFAULT_FROM_EMAIL.
    "ALERT_FROM_EMAIL": None,
}


def hot_settings() -> dict[str, Any]:
    """settings.HOT over the defaults. Read per use, so override_settings takes effect."""
    return {**DEFAULTS, **getattr(settings, "HOT", {})}


# channels-redis waits up to 5 s in each BZPOPMIN; redis-py 8 also gives up on a silent socket
# after 5 s by default, so every idle websocket's receive loop died with "Timeout reading from
# redis" and the browser reconnected every few seconds. The socket must outwait the command.
CHANNEL_LAYER_SOCKET_TIMEOUT_SECONDS = 30


def redis_channel_layer(url: str) -> dict[str, Any]:
    """A CHANNEL_LAYERS["default"] entry for channels-redis at `url`, with socket timeouts that
    outlast its blocking reads (use it in a project that adds Hot, too)."""
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": url,
                    "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT_SECONDS,
                    "socket_connect_timeout": 5,
                    "socket_keepalive": True,
                    # A connection dropped by a proxy or a Redis restart is found before use.
                    "health_check_interval": 10,
                }
            ]
        },
    }
