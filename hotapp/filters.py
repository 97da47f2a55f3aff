"""Filter forms for the runs and events lists. All filter state lives in the query string."""

import base64
import binascii
import uuid
from datetime import UTC, datetime

from django import forms
from django.utils import timezone

from hotapp.models import RunStatus, Trigger
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


class RunFilterForm(ListFilterForm):
    status = forms.MultipleChoiceField(required=False, choices=RunStatus.choices)
    function = forms.CharField(required=False, max_length=300, strip=True)
    event_type = forms.CharField(required=False, max_length=200, strip=True)
    trigger = forms.ChoiceField(required=False, choices=[("", "any"), *Trigger.choices])


class EventFilterForm(ListFilterForm):
    type = forms.CharField(required=False, max_length=200, strip=True)
    handled = forms.ChoiceField(
        required=False, choices=[("", "any"), ("yes", "handled"), ("no", "unhandled")]
    )
