"""Field masking: values under secret-looking keys (HOT["MASK_KEYS"]) are never shown.

Where it applies (docs/architecture.md, "Retention and masking", says why):
- Traces are masked when they are recorded (runtime/trace_recorder.py), so the secret is never
  stored in a trace.
- Payloads (an event's data, a run's input and result, a task's input, result, checkpoints and
  messages) are stored as the program gave them, because the engine hands them back to code: a
  retry or rerun calls the handler with the same input, `restore()` returns the checkpoint,
  `TaskHandle.result()` the result. They are masked on every way out: the pages (the
  `pretty_json` / `compact_json` / `masked_preview` filters), the JSON API, and anything else
  that shows them should call `mask()`.

A key matches a mask entry when the entry's words appear together in the key's words, case and
separators aside: "card" masks `card`, `card_number`, `creditCard`, `Credit-Card`, but not
`discard` or `cardinality`; "api_key" masks `api_key`, `X-Api-Key`, `apiKey` and `apikey`.
"""

import functools
import json
import re
from typing import Any

from django.core.signals import setting_changed

#: What a masked value is shown as.
MASKED = "••••"

# "cardNumber" → card, number; "X-API-Key" → x, api, key; "HTTPHeader" → http, header.
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def words(key: str) -> tuple[str, ...]:
    return tuple(w.lower() for w in _WORD.findall(key))


class Masker:
    """Decides, once per key, whether its value is masked."""

    def __init__(self, mask_keys: list[str]) -> None:
        # Each entry as its words joined: a key matches when some run of its consecutive
        # words joins to one of these ("api"+"key" and "apikey" alike).
        self.entries = frozenset("".join(words(entry)) for entry in mask_keys if words(entry))
        self.is_masked = functools.lru_cache(maxsize=4096)(self._is_masked)

    def _is_masked(self, key: str) -> bool:
        parts = words(key)
        for start in range(len(parts)):
            joined = ""
            # Bounded: a key of many words would otherwise cost its length squared.
            for part in parts[start:]:
                joined += part
                if joined in self.entries:
                    return True
                if len(joined) > 40:
                    break
        return False


@functools.cache
def _masker(mask_keys: tuple[str, ...]) -> Masker:
    return Masker(list(mask_keys))


_current: Masker | None = None


def masker() -> Masker:
    """The Masker of the settings in force (rebuilt when a test overrides HOT)."""
    global _current
    if _current is None:
        from hotapp.conf import hot_settings

        keys = hot_settings()["MASK_KEYS"]
        _current = _masker(tuple(keys) if keys else ())
    return _current


def _forget(setting: str, **_: Any) -> None:
    global _current
    if setting == "HOT":
        _current = None


setting_changed.connect(_forget)


def is_masked_key(key: object) -> bool:
    return isinstance(key, str) and masker().is_masked(key)


def mask(value: Any) -> Any:
    """A copy of a JSON value with every value under a masked key replaced by MASKED
    (at any depth, in lists too). Returns the value itself when nothing is masked."""
    m = masker()
    if not m.entries:
        return value
    return _mask(value, m)


def _mask(value: Any, m: Masker) -> Any:
    if isinstance(value, dict):
        return {
            key: MASKED if isinstance(key, str) and m.is_masked(key) else _mask(item, m)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_mask(item, m) for item in value]
    return value


# A JSON object key in text: "key" then a colon.
_KEY = re.compile(r'"((?:[^"\\]|\\.)*)"\s*:\s*')


def mask_json_text(text: str) -> str:
    """Mask a piece of JSON text that may be cut anywhere (the events list's preview, cut in
    SQL): the value after each masked key, up to its end or the end of the text."""
    m = masker()
    if not m.entries or not text:
        return text
    out = []
    pos = 0
    while True:
        found = _KEY.search(text, pos)
        if found is None:
            break
        try:
            key = json.loads(f'"{found.group(1)}"')
        except ValueError:
            key = found.group(1)
        if not m.is_masked(key):
            out.append(text[pos : found.end()])
            pos = found.end()
            continue
        out.append(text[pos : found.end()])
        out.append(json.dumps(MASKED, ensure_ascii=False))
        pos = _value_end(text, found.end())
    out.append(text[pos:])
    return "".join(out)


def _value_end(text: str, start: int) -> int:
    """Where the JSON value starting at `start` ends (or the text's end if it is cut)."""
    depth = 0
    in_string = False
    i = start
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
                if depth == 0:
                    return i + 1
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            if depth == 0:
                return i
            depth -= 1
            if depth == 0:
                return i + 1
        elif ch == "," and depth == 0:
            return i
        i += 1
    return len(text)
