"""Filter forms for the runs and events lists. All filter state lives in the query string."""

import base64
import binascii
import uuid
from datetime import UTC, datetime

from django import forms
from django.utils import timezone

from hotapp.models import RunStatus, Trigger
from hotapp.querysets import ALL_FAILED_ATTEMPTS
from hotapp.search import Search, SearchError

DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def row_key(created_at: datetime, row_id: uuid.UUID) -> str:
    """A list row's place in the newest-first order, as text that sorts the way the list does:
    fixed-width UTC time to the microsecond, then the id (lowercase hex compares as PostgreSQL
    compares uuids). Live updates carry it so that a page places rows without parsing dates; it
    is also a cursor (`?after=<key>`), so a page that drops rows can link on from its last one."""
    utc = created_at.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S.%f}+00:00|{row_id}"


def decode_cursor(text: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = text  # a row key as it is, or an encoded cursor (base64 never holds a "|")
        if "|" not in text:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        when, _, row_id = raw.partition("|")
        created_at = datetime.fromisoformat(when)
        if timezone.is_naive(created_at):
            raise ValueError("naive")
        return created_at, uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise forms.ValidationError(
            "This page link is broken; start again from the first page."
        ) from None


class ListFilterForm(forms.Form):
    since = forms.DateTimeField(required=False, input_formats=DATETIME_FORMATS)
    until = forms.DateTimeField(required=False, input_formats=DATETIME_FORMATS)
    q = forms.CharField(required=False, max_length=500, strip=True)
    after = forms.CharField(required=False, max_length=200)

    def clean_q(self) -> Search:
        try:
            return Search.parse(self.cleaned_data.get("q", ""))
        except SearchError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_after(self):
        text = self.cleaned_data.get("after")
        return decode_cursor(text) if text else None

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and until <= since:
            self.add_error("until", "“Until” must be later than “since”.")
        return data

    def error_messages(self) -> list[str]:
        labels = {"q": "Search", "after": "Page", "event_type": "Event type"}
        return [
            f"{labels.get(field, field.replace('_', ' ').capitalize())}: {message}"
            for field, messages in self.errors.items()
            for message in messages
        ]


def _status_choices() -> list[tuple[str, str]]:
    """The run statuses, "failed" standing for the chains that need attention (a failed
    attempt whose retry is under way or succeeded is not one), then every failed attempt."""
    choices = []
    for value, label in RunStatus.choices:
        if value == RunStatus.FAILED:
            choices.append((value, "Needs attention"))
            choices.append((ALL_FAILED_ATTEMPTS, "Failed attempts (all)"))
        else:
            choices.append((value, label))
    return choices


class RunFilterForm(ListFilterForm):
    status = forms.MultipleChoiceField(required=False, choices=_status_choices)
    function = forms.CharField(required=False, max_length=300, strip=True)
    event_type = forms.CharField(required=False, max_length=200, strip=True)
    trigger = forms.ChoiceField(required=False, choices=[("", "any"), *Trigger.choices])


class EventFilterForm(ListFilterForm):
    type = forms.CharField(required=False, max_length=200, strip=True)
    handled = forms.ChoiceField(
        required=False, choices=[("", "any"), ("yes", "handled"), ("no", "unhandled")]
    )


# The runs list's filter as data: what a bulk operation stores and replays, and what `hot runs`
# builds from its options. The page cursor is no filter (a bulk action covers every page).
NOT_A_FILTER = frozenset({"after"})
# The order a filter is written in (`status=failed, function=…, q=…`); other fields follow.
FILTER_ORDER = ("status", "function", "event_type", "trigger", "q", "since", "until")


def run_filter_params(data) -> dict:
    """The runs-list filters in `data` (a QueryDict, or a dict of strings and lists) as JSON:
    only the form's own fields, no empty values, a list for a field that takes several values
    (status), in FILTER_ORDER. Validate with run_filter_form()."""
    params: dict = {}
    fields = RunFilterForm.base_fields
    known = len(FILTER_ORDER)
    for name in sorted(fields, key=lambda n: FILTER_ORDER.index(n) if n in FILTER_ORDER else known):
        field = fields[name]
        if name in NOT_A_FILTER:
            continue
        if hasattr(data, "getlist"):
            values = data.getlist(name)
        else:
            value = data.get(name)
            values = value if isinstance(value, list | tuple) else [value]
        values = [str(v) for v in values if v not in (None, "")]
        if not values:
            continue
        params[name] = values if isinstance(field, forms.MultipleChoiceField) else values[-1]
    return params


def run_filter_form(params: dict) -> RunFilterForm:
    """The runs page's own form over stored filter params, so a bulk action or `hot runs`
    matches exactly the runs the page lists for the same URL."""
    from django.http import QueryDict

    data = QueryDict(mutable=True)
    for name, value in params.items():
        data.setlist(name, value if isinstance(value, list) else [value])
    return RunFilterForm(data)


def describe_run_filter(params: dict) -> str:
    """`status=failed, function=app.handlers.charge` as a person reads it; "all runs" if none."""
    parts = [
        f"{name}={','.join(value) if isinstance(value, list) else value}"
        # In FILTER_ORDER again: a filter read back from a jsonb column has its keys reordered.
        for name, value in run_filter_params(params).items()
    ]
    return ", ".join(parts) or "all runs"


def filter_pairs(params: dict) -> list[tuple[str, str]]:
    """A filter as (name, value) pairs, a status per pair: hidden inputs that carry it on."""
    return [
        (name, item)
        for name, value in params.items()
        for item in (value if isinstance(value, list) else [value])
    ]
