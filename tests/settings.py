"""Settings for the test suite: the production shape, on real PostgreSQL and Redis.

TEST_DATABASE_URL / TEST_REDIS_URL point elsewhere; pytest-django creates and drops its own
`test_<name>` database. The embedded default (SQLite, in-process broker) is tested by starting
`hot dev` in a subprocess (tests/test_embedded.py).
"""

import os

os.environ["DATABASE_URL"] = os.environ.get(
    "TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"
)
os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault(
    "HOT_HANDLER_MODULES",
    "hotapp.demo.handlers,tests.handlers,tests.trace_handlers,tests.task_handlers,"
    "tests.flow_handlers",
)

from hotproject.settings import *  # noqa: E402,F403

# An app found the way a user's app is: by its `handlers` module (tests/test_registry.py).
INSTALLED_APPS = [*INSTALLED_APPS, "tests.discovered_app"]  # noqa: F405

# Fast failure paths: retries and leases in milliseconds and seconds, not minutes.
HOT = {**HOT, "RETRY_MIN_DELAY_MS": 10}  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
