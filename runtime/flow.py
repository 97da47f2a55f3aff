"""Flow control as handler options: concurrency, rate limit, debounce (per key) and priority.

`@on_event("order:created", concurrency=2, key="data.customer_id", rate_limit="10/m",
debounce="5s", priority=...)`. The options are checked when the handler is decorated; each run
of the handler carries what they evaluate to for its event, in two columns written when the run
is inserted:

- `priority` (every run; 0 by default): queue order is priority (higher first), then age;
- `flow_key` (NULL unless the handler has a concurrency limit, a rate limit or a debounce): the
  key the limits count by, '' when there is no `key`. Workers claim runs with a flow_key through
  runtime.flow_claim, which enforces the limits in the database; runs without one keep the fast
  path (executor.claim_batch) and pay nothing for flow control.
"""

import json
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

PRIORITY_MIN, PRIORITY_MAX = -32768, 32767  # a smallint
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|m|h|d)\s*$")
_PATH_ROOTS = ("data", "type", "id")


@dataclass(frozen=True)
class FlowControl:
    """A handler's flow-control options, parsed (see on_event)."""

    concurrency: int | None = None  #: most runs running at once per key
    key: str | None = None  #: dotted path into the event the limits count by; None: one key
    rate_count: int | None = None  #: most runs started per key in any window of rate_seconds
    rate_seconds: float = 0.0
    debounce_seconds: float | None = None  #: hold each run this long; a later event replaces it
    priority: int | str = 0  #: a number, or a dotted path into the event giving one

    @property
    def is_limited(self) -> bool:
        """Whether runs carry a flow_key (claimed through runtime.flow_claim)."""
        return (
            self.concurrency is not None
            or self.rate_count is not None
            or self.debounce_seconds is not None
        )

    def describe(self) -> str:
        """One line for logs and pages: "concurrency 2 per data.customer_id, 10/60s"."""
        parts = []
        if self.concurrency is not None:
            parts.append(f"concurrency {self.concurrency}")
        if self.rate_count is not None:
            parts.append(f"rate {self.rate_count}/{self.rate_seconds:g}s")
        if self.debounce_seconds is not None:
            parts.append(f"debounce {self.debounce_seconds:g}s")
        text = ", ".join(parts)
        if self.key and text:
            text += f" per {self.key}"
        if self.priority:
            text += f"{', ' if text else ''}priority {self.priority}"
        return text


NO_FLOW = FlowControl()


def parse_duration(value: "str | float | int | timedelta", option: str) -> float:
    """Seconds from "5s", "250ms", "2m", "1h", "1d", a number of seconds or a timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(
            f'{option}= takes a duration like "5s", "250ms", "2m", "1h", a number of seconds '
            f"or a timedelta, not {value!r}"
        )
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"{option}= must be a positive duration, not {value!r}")
    return seconds


def parse_rate(value: str) -> tuple[int, float]:
    """(count, window seconds) from "10/m", "5/s", "100/h", "3/10s", "1/d"."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f'rate_limit= takes "N/s", "N/m", "N/h", "N/d" or "N/<number><unit>" '
            f'(like "10/m" or "3/10s"), not {value!r}'
        )
    count = int(match.group(1))
    window = float(match.group(2) or 1) * _UNITS[match.group(3)]
    if count < 1 or window <= 0:
        raise ValueError(f"rate_limit= needs at least 1 run per a positive window: {value!r}")
    return count, window


def _check_path(path: str, option: str) -> str:
    parts = path.split(".") if isinstance(path, str) else []
    if not parts or parts[0] not in _PATH_ROOTS or not all(parts):
        raise ValueError(
            f'{option}= takes a dotted path into the event, like "data.customer_id" or "type" '
            f"(starting with data, type or id), not {path!r}"
        )
    return path


def flow_control(
    *,
    concurrency: int | None = None,
    key: str | None = None,
    rate_limit: str | None = None,
    debounce: "str | float | timedelta | None" = None,
    priority: int | str = 0,
) -> FlowControl:
    """Check and parse on_event's flow-control options; ValueError says what is wrong."""
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise ValueError(f"concurrency= must be a whole number of at least 1, not {concurrency!r}")
    rate = parse_rate(rate_limit) if rate_limit is not None else (None, 0.0)
    seconds = parse_duration(debounce, "debounce") if debounce is not None else None
    if isinstance(priority, bool) or not isinstance(priority, int | str):
        raise ValueError(
            f'priority= takes a number or a path like "data.priority", not {priority!r}'
        )
    if isinstance(priority, int) and not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority= must be between {PRIORITY_MIN} and {PRIORITY_MAX}")
    if isinstance(priority, str):
        _check_path(priority, "priority")
    flow = FlowControl(concurrency, key, rate[0], rate[1], seconds, priority)
    if key is not None:
        _check_path(key, "key")
        if not flow.is_limited:
            raise ValueError("key= needs concurrency=, rate_limit= or debounce= to count by it")
    return flow


def _lookup(path: str, event_id: Any, event_type: str, data: Any) -> Any:
    root, *rest = path.split(".")
    value: Any = {"data": data, "type": event_type, "id": str(event_id)}[root]
    for part in rest:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def columns(flow: FlowControl, event_id: Any, event_type: str, data: Any) -> tuple[str | None, int]:
    """(flow_key, priority) of a new run of a handler with `flow` for this event.

    A missing key value counts as '' (those runs share one key); a value that is not a string
    is its JSON text, so 7 and "7" are different keys. A priority path giving anything but a
    whole number gives 0; numbers are clamped to the smallint range.
    """
    if flow is NO_FLOW:  # most handlers: nothing to evaluate
        return None, 0
    flow_key = None
    if flow.is_limited:
        flow_key = ""
        if flow.key is not None:
            value = _lookup(flow.key, event_id, event_type, data)
            if value is not None:
                flow_key = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    priority = flow.priority
    if isinstance(priority, str):
        value = _lookup(priority, event_id, event_type, data)
        priority = value if isinstance(value, int) and not isinstance(value, bool) else 0
    return flow_key, max(PRIORITY_MIN, min(PRIORITY_MAX, priority))
