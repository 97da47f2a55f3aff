"""Filter forms for the runs and events lists. All filter state lives in the query string."""

import base64
import binascii
import uuid
from datetime import datetime

from django import forms
from django.utils import timezone

from hotapp.models import RunStatus, Trigger
from hotapp.querysets import ALL_FAILED_ATTEMPTS
from hotapp.search import Search, SearchError

DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, uuid.UUID]:
    try:
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
