"""The dashboard's search box: `key:value` terms on JSON paths and free-text words.

    order_id:42 customer.email:a@b.c "card declined" timeout

On PostgreSQL a `key:value` term is a containment test (`input @> '{"order_id": 42}'`) served by
GIN indexes, and a word is an ILIKE over the payloads' text served by trigram indexes (migration
0004). SQLite, the embedded default, answers the same queries by scanning.

A key is only ever a key: on PostgreSQL it is a name in the containment document, on SQLite one
label of a JSON path built by ObjectKey, never a Django lookup name (`contains:1` is the key
"contains") nor an array index (`0:x` is the key "0", as in the containment document).
"""

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import BooleanField, Q, QuerySet, TextField
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Cast

from hotapp.masking import is_masked_key

KEY_RE = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")
TOKEN_RE = re.compile(r'([^\s":]+):"([^"]*)"|"([^"]*)"|(\S+)')
MIN_WORD = 3
MAX_TERMS = 8

# The text a free-text search matches, exactly as the trigram indexes of migration 0004 index it.
RUN_TEXT_SQL = (
    '("hotapp_run"."input"::text || \' \' || coalesce("hotapp_run"."result"::text, \'\') '
    '|| \' \' || "hotapp_run"."error_type" || \' \' || "hotapp_run"."error_message")'
)
EVENT_TEXT_SQL = '("hotapp_event"."data"::text)'


class SearchError(ValueError):
    pass


@dataclass(frozen=True)
class Search:
    pairs: tuple[tuple[tuple[str, ...], str], ...] = ()  #: (JSON path, value as typed)
    words: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.pairs or self.words)

    @classmethod
    def parse(cls, text: str) -> "Search":
        if text.count('"') % 2:
            raise SearchError('A quote (") is not closed.')
        pairs, words = [], []
        for keyed, keyed_value, quoted, bare in TOKEN_RE.findall(text):
            if keyed:
                key, value = keyed, keyed_value
            elif quoted:
                key, value = "", quoted
            elif ":" in bare.strip(":") and not bare.startswith(":"):
                key, value = bare.split(":", 1)
            else:
                if bare.startswith(":") or bare.endswith(":"):
                    raise SearchError(f"“{bare}” needs a key and a value, as in order_id:42.")
                key, value = "", bare
            if key:
                if not KEY_RE.fullmatch(key):
                    raise SearchError(
                        f"“{key}” is not a key path: use names joined by dots, as in "
                        "customer.email."
                    )
                if not value:
                    raise SearchError(f"“{key}:” needs a value, as in {key}:42.")
                if any(is_masked_key(part) for part in key.split(".")):
                    # Searching by a value the pages hide would tell it, one guess at a time.
                    raise SearchError(f"“{key}” is a masked field: its values cannot be searched.")
                pairs.append((tuple(key.split(".")), value))
            else:
                if len(value.strip()) < MIN_WORD:
                    raise SearchError(
                        f"“{value}” is too short: free-text words need at least {MIN_WORD} "
                        "characters."
                    )
                words.append(value.strip())
        if len(pairs) + len(words) > MAX_TERMS:
            raise SearchError(f"Use at most {MAX_TERMS} search terms.")
        return cls(tuple(pairs), tuple(words))

    def apply(self, qs: QuerySet, json_fields: tuple[str, ...], text_sql: str) -> QuerySet:
        """Narrow `qs` to rows whose `json_fields` hold every pair and whose text has every word."""
        postgres = connection.vendor == "postgresql"
        for n, (path, raw) in enumerate(self.pairs):
            match = Q()
            if not postgres:  # the values at the path, under names no key text can spell
                keys = {field: f"search_{n}_{field}" for field in json_fields}
                qs = qs.alias(**{keys[field]: json_key(field, path) for field in json_fields})
            for value in candidates(raw):
                for field in json_fields:
                    if postgres:
                        match |= Q(**{f"{field}__contains": nested(path, value)})
                    else:
                        match |= Q(**{keys[field]: value})
            qs = qs.filter(match)
        for word in self.words:
            if postgres:
                qs = qs.filter(RawSQL(f"{text_sql} ILIKE %s", [like_pattern(word)], BooleanField()))
            else:
                text = Q()
                for field in json_fields:
                    text |= Q(**{f"{field}_text__icontains": word})
                qs = qs.annotate(**{f"{f}_text": Cast(f, TextField()) for f in json_fields})
                if "input" in json_fields:  # runs: errors are searched as text too
                    text |= Q(error_type__icontains=word) | Q(error_message__icontains=word)
                qs = qs.filter(text)
        return qs


def candidates(raw: str) -> list[Any]:
    """`42` may be the number or the string: match either. `NaN`, `Infinity` and `1e999` are
    only strings: JSON has no such numbers (PostgreSQL's jsonb rejects them)."""
    values: list[Any] = [raw]
    try:
        parsed = json.loads(raw)
    except ValueError:
        return values
    if isinstance(parsed, float) and not math.isfinite(parsed):
        return values
    if parsed is None or isinstance(parsed, bool | int | float):
        values.append(parsed)
    return values


class ObjectKey(KeyTransform):
    """One key of a JSON object, whatever its text. Django's KeyTransform reads a key like "0"
    as an array index; a search term's key is always an object's key."""

    def as_sqlite(self, compiler, connection):
        lhs, params, keys = self.preprocess_lhs(compiler, connection)
        path = "$" + "".join(f".{json.dumps(key)}" for key in keys)  # a parameter, not SQL
        # As Django's KeyTransform.as_sqlite: JSON_EXTRACT returns SQL NULL for a JSON null
        # and 0/1 for false/true, so those are compared by type.
        types = ",".join(repr(t) for t in connection.ops.jsonfield_datatype_values)
        return (
            f"(CASE WHEN JSON_TYPE({lhs}, %s) IN ({types}) "
            f"THEN JSON_TYPE({lhs}, %s) ELSE JSON_EXTRACT({lhs}, %s) END)"
        ), (*params, path) * 3


def json_key(field: str, path: tuple[str, ...]) -> KeyTransform:
    """The value at `path` inside the JSON column `field` (SQLite: a JSON path, not lookups)."""
    expression: Any = field
    for key in path:
        expression = ObjectKey(key, expression)
    return expression


def nested(path: tuple[str, ...], value: Any) -> dict:
    result: Any = value
    for key in reversed(path):
        result = {key: result}
    return result


def like_pattern(word: str) -> str:
    """`%word%` for ILIKE, with the word's own % and _ taken literally."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
