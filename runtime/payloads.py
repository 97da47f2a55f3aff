"""Checks on what users hand us, made before anything is written."""

import json
import re
from typing import Any

from django.conf import settings

from runtime.exceptions import InvalidEventType, PayloadError

# Segments of letters, digits, '_', '-', '.', joined by ':' — "order:created", "billing.v2:paid".
EVENT_TYPE_RE = re.compile(r"[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)*")
EVENT_TYPE_MAX_LENGTH = 200


def validate_event_type(event_type: object) -> str:
    if not isinstance(event_type, str):
        raise InvalidEventType(f"Event type must be a string, got {type(event_type).__name__}")
    if not event_type:
        raise InvalidEventType("Event type must not be empty")
    if len(event_type) > EVENT_TYPE_MAX_LENGTH:
        raise InvalidEventType(
            f"Event type is {len(event_type)} characters; the limit is {EVENT_TYPE_MAX_LENGTH}"
        )
    if not EVENT_TYPE_RE.fullmatch(event_type):
        raise InvalidEventType(
            f"Event type {event_type!r} is malformed: use letters, digits, '_', '-', '.' in "
            "segments joined by ':' (for example 'order:created')"
        )
    return event_type


def check_json(value: Any, what: str) -> None:
    """Raise PayloadError unless `value` is JSON the database can store, within the size limit."""
    try:
        encoded = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{what} must be JSON-serializable: {exc}") from None
    limit = settings.HOT["MAX_PAYLOAD_BYTES"]
    size = len(encoded.encode("utf-8"))
    if size > limit:
        raise PayloadError(
            f"{what} is {size} bytes as JSON; the limit is {limit} (HOT_MAX_PAYLOAD_BYTES)"
        )
    # PostgreSQL's jsonb cannot hold a NUL character; refuse it here rather than at COMMIT.
    if "\\u0000" in encoded:
        raise PayloadError(f"{what} contains a NUL character (\\u0000), which cannot be stored")
