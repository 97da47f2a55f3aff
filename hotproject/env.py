"""Typed readers for settings that come from the environment.

Each takes a default that works for the embedded mode, so `hot dev` needs no configuration.
"""

import json
import os
from typing import TypeVar
from urllib.parse import parse_qsl, unquote, urlparse

N = TypeVar("N", int, float)


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """A whole number, within [minimum, maximum] when given: out of range stops start-up with
    an error naming the variable, rather than failing later where the number is used."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        value = default
    else:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    return _in_range(name, value, minimum, maximum)


def env_float(
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    above: float | None = None,
) -> float:
    """A number, at least `minimum` or greater than `above` when given (see env_int)."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        value = default
    else:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if above is not None and not value > above:
        raise ValueError(f"{name} must be greater than {above:g}, got {value}")
    return _in_range(name, value, minimum, None)


def _in_range(name: str, value: N, minimum: N | None, maximum: N | None) -> N:
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def env_list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


def database_from_url(url: str) -> dict:
    """Django DATABASES entry for a `postgres://user:pass@host:port/name?param=value` URL; the
    query parameters are libpq connection parameters (sslmode, connect_timeout, …)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must be a postgres:// URL, got scheme {parsed.scheme!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        # Persistent connections: closing around every Celery task costs ~2.5x throughput.
        # Health checks make a connection that died with a restarted server reconnect.
        "CONN_MAX_AGE": env_int("HOT_DB_CONN_MAX_AGE", 600, minimum=0),
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": dict(parse_qsl(parsed.query, keep_blank_values=True)),
    }


def env_json(name: str, default: object) -> object:
    """A JSON value (a list of alert channels, say): malformed JSON stops start-up with an error
    naming the variable."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} must be JSON ({exc})") from None
