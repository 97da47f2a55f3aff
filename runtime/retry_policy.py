"""Retry policy: how many retries a handler gets and how long to wait before each.

Semantics follow Hot's: `retry=3` means up to three retries after the first attempt; `delay`,
`backoff` ("fixed" | "linear" | "exponential"), `max_delay` and `jitter` (about ±10 %) shape the
wait. Values are clamped to the platform's limits (settings.HOT RETRY_*).
"""

import random
from dataclasses import dataclass
from datetime import timedelta

from hotapp.conf import hot_settings

BACKOFFS = ("fixed", "linear", "exponential")


def _as_ms(value: float | timedelta, name: str) -> int:
    """Durations are given as seconds (a number) or a timedelta; stored in milliseconds."""
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1000)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"Retry {name} must be seconds or a timedelta, got {value!r}")
    return int(value * 1000)


@dataclass(frozen=True)
class Retry:
    """Retry policy for a handler.

    `attempts` is the number of retries after the first try (0 disables retries); `delay` and
    `max_delay` are seconds (or timedeltas).
    """

    attempts: int = 0
    delay: float | timedelta = 1.0
    backoff: str = "fixed"
    max_delay: float | timedelta = 300.0
    jitter: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"Retry attempts must be an int, got {self.attempts!r}")
        if self.attempts < 0:
            raise ValueError("Retry attempts cannot be negative")
        if self.backoff not in BACKOFFS:
            raise ValueError(f"Retry backoff must be one of {', '.join(BACKOFFS)}")
        _as_ms(self.delay, "delay")
        _as_ms(self.max_delay, "max_delay")

    def as_dict(self) -> dict:
        """The clamped policy, as stored on each run (delays in milliseconds)."""
        hot = hot_settings()
        delay_ms = min(
            max(_as_ms(self.delay, "delay"), hot["RETRY_MIN_DELAY_MS"]), hot["RETRY_MAX_DELAY_MS"]
        )
        max_delay_ms = min(
            max(_as_ms(self.max_delay, "max_delay"), delay_ms), hot["RETRY_MAX_DELAY_MS"]
        )
        return {
            "attempts": min(self.attempts, hot["RETRY_MAX_ATTEMPTS"]),
            "delay_ms": delay_ms,
            "backoff": self.backoff,
            "max_delay_ms": max_delay_ms,
            "jitter": self.jitter,
        }


def as_policy(retry: "int | Retry | None") -> Retry:
    """Accept `retry=3` as shorthand for `Retry(attempts=3)`."""
    if retry is None:
        return Retry()
    if isinstance(retry, Retry):
        return retry
    if isinstance(retry, int) and not isinstance(retry, bool):
        return Retry(attempts=retry)
    raise TypeError(f"retry must be an int or a Retry, got {retry!r}")


def has_retry_left(policy: dict, attempt: int) -> bool:
    """Whether a run on `attempt` (1-based) that failed gets another attempt."""
    return attempt - 1 < policy.get("attempts", 0)


def delay_ms_before(policy: dict, retry_number: int) -> int:
    """Milliseconds to wait before retry number `retry_number` (1 for the first retry)."""
    base = policy["delay_ms"]
    backoff = policy["backoff"]
    if backoff == "exponential":
        delay = base * 2 ** (retry_number - 1)
    elif backoff == "linear":
        delay = base * retry_number
    else:
        delay = base
    if policy.get("jitter"):
        delay = delay * random.uniform(0.9, 1.1)
    return int(min(delay, policy["max_delay_ms"]))
