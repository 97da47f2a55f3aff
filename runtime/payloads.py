"""Checks on what users hand us, made before anything is written."""

import json
import re
from typing import Any

from hotapp.conf import hot_settings
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


# Deeper than this, JSON is refused: far below Python's recursion limit, so that encoding it
# at commit and decoding it when its run is claimed (both deeper in the stack than send())
# cannot fail where the check passed.
MAX_JSON_DEPTH = 200
# An escaped NUL character in encoded JSON: "\\u0000" preceded by an even number of
# backslashes (an odd number would make it the text "\\u0000", which is fine).
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def check_json(value: Any, what: str) -> str:
    """Return `value` encoded as JSON; raise PayloadError unless PostgreSQL can store it
    (jsonb refuses NUL characters and lone surrogates) within the size limit."""
    try:
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{what} must be JSON-serializable: {exc}") from None
    except RecursionError:
        raise PayloadError(f"{what} is nested too deeply to be stored as JSON") from None
    try:
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError as exc:
        char = exc.object[exc.start : exc.start + 1]
        raise PayloadError(
            f"{what} contains a lone surrogate ({char!r}), which is not Unicode text and "
            "cannot be stored"
        ) from None
    limit = hot_settings()["MAX_PAYLOAD_BYTES"]
    if size > limit:
        raise PayloadError(
            f"{what} is {size} bytes as JSON; the limit is {limit} (HOT_MAX_PAYLOAD_BYTES)"
        )
    if "\\u0000" in encoded and _NUL_ESCAPE.search(encoded):
        raise PayloadError(f"{what} contains a NUL character (\\u0000), which cannot be stored")
    # Nesting needs brackets: most payloads have too few to be deep, and skip the scan.
    if encoded.count("[") + encoded.count("{") > MAX_JSON_DEPTH:
        depth = _depth(encoded)
        if depth > MAX_JSON_DEPTH:
            raise PayloadError(
                f"{what} is nested {depth} levels deep; the limit is {MAX_JSON_DEPTH}"
            )
    return encoded


def _depth(encoded: str) -> int:
    """How deeply encoded JSON nests arrays and objects."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRING.sub("", encoded)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def storable_text(text: str) -> str:
    """`text` as a PostgreSQL text column can hold it: NUL characters and lone surrogates
    written as escapes (\\x00, \\ud800) instead."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
