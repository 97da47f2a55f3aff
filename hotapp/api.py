"""A small JSON API over the same queries as the pages: runs, events, and the run actions.

Authenticated by an API token (`Authorization: Bearer hot_…`, no CSRF) or the session (a POST
then needs the CSRF token), as the token's or session's user with that user's permissions:
`hotapp.view_run` to read, `hotapp.operate_run` too for actions (hotapp/auth.py). Every error is
JSON: {"error": {"code": …, "message": …}}.

Lists take the pages' query parameters, `limit` (1–500, default 50; more is a 400) and
`include=payloads`; they page by the `next` cursor (pass it as `after`). Rows carry no payloads
(input, result, error text, event data) unless asked: a page of 500 rows reads no megabytes.
"""

from django import forms
from django.http import HttpRequest, JsonResponse
from django.urls import Resolver404, resolve, reverse
from django.views.decorators.csrf import csrf_exempt

from hotapp.auth import OPERATE, api_view, json_error
from hotapp.filters import EventFilterForm, RunFilterForm, encode_cursor
from hotapp.masking import mask
from hotapp.models import AuditEntry, Event, Run, Via
from hotapp.querysets import filtered_page
from runtime import (
    Actor,
    EventNotFound,
    HotError,
    RunNotFound,
    cancel_event,
    cancel_run,
    rerun,
    retry_run,
)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
INCLUDES = ("payloads",)

# What a list row reads without include=payloads: everything but the payload columns.
RUN_ROW_FIELDS = (
    "id",
    "function",
    "trigger",
    "event_id",
    "event_type",
    "task_id",
    "stream_id",
    "status",
    "attempt",
    "origin_run_id",
    "rerun_of_id",
    "error_type",
    "created_at",
    "started_at",
    "finished_at",
    "next_retry_at",
    "available_at",
    "wait_reason",
    "recovery_count",
)
EVENT_ROW_FIELDS = (
    "id",
    "type",
    "source_run_id",
    "stream_id",
    "is_handled",
    "created_at",
    "deliver_at",
)


class ListOptions(forms.Form):
    limit = forms.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT)
    include = forms.CharField(required=False, max_length=100)

    def clean_include(self) -> set[str]:
        asked = {part.strip() for part in self.cleaned_data["include"].split(",") if part.strip()}
        unknown = asked - set(INCLUDES)
        if unknown:
            raise forms.ValidationError(
                f"{', '.join(sorted(unknown))} cannot be included; only {', '.join(INCLUDES)}."
            )
        return asked


def _id(value) -> str | None:
    return str(value) if value else None


def run_json(run: Run, payloads: bool = True) -> dict:
    row = {
        "id": str(run.id),
        "function": run.function,
        "trigger": run.trigger,
        "event_id": _id(run.event_id),
        "event_type": run.event_type,
        "task_id": _id(run.task_id),
        "stream_id": str(run.stream_id),
        "status": run.status,
        "attempt": run.attempt,
        "origin_run_id": _id(run.origin_run_id),
        # A later attempt of its chain exists: a failed attempt that does not need attention.
        "is_superseded": run.is_superseded,
        "rerun_of_id": _id(run.rerun_of_id),
        "error_type": run.error_type or None,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_ms": run.duration_ms,
        "next_retry_at": run.next_retry_at,
        # A held queued run: what it waits for ("delay", "concurrency", …) and until when.
        "wait_reason": run.wait_reason,
        "available_at": run.available_at,
        "recovery_count": run.recovery_count,
    }
    if payloads:
        # Masked on the way out: the stored input is what retries call the handler with.
        row["input"] = mask(run.input)
        row["result"] = mask(run.result)
        row["error"] = (
            {
                "type": run.error_type,
                "message": run.error_message,
                "traceback": run.error_traceback,
            }
            if run.error_type
            else None
        )
    return row


def event_json(event: Event, payloads: bool = True) -> dict:
    row = {
        "id": str(event.id),
        "type": event.type,
        "source_run_id": _id(event.source_run_id),
        "stream_id": str(event.stream_id),
        "is_handled": event.is_handled,
        "created_at": event.created_at,
        "deliver_at": event.deliver_at,
    }
    if payloads:
        row["data"] = mask(event.data)
    return row


def audit_json(entry: AuditEntry) -> dict:
    return {
        "action": entry.action,
        "by": entry.username or None,
        "via": entry.via,
        "at": entry.created_at,
        "run_id": _id(entry.run_id),
        "result_run_id": _id(entry.result_run_id),
    }


def bad_request(messages: list[str]) -> JsonResponse:
    return json_error(400, "bad_request", " ".join(messages), details=messages)


def _list(request: HttpRequest, form, queryset, fields, to_json) -> JsonResponse:
    options = ListOptions(request.GET)
    if not (form.is_valid() & options.is_valid()):  # both, to report every bad parameter
        problems = [f"{f.capitalize()}: {m}" for f, ms in options.errors.items() for m in ms]
        return bad_request(form.error_messages() + problems)
    payloads = "payloads" in options.cleaned_data["include"]
    if not payloads:
        queryset = queryset.only(*fields)
    limit = options.cleaned_data["limit"] or DEFAULT_LIMIT
    rows, cursor = filtered_page(queryset, form.cleaned_data, limit)
    return JsonResponse(
        {
            "results": [to_json(row, payloads) for row in rows],
            "next": encode_cursor(*cursor) if cursor else None,
        }
    )


@api_view()
def runs(request: HttpRequest) -> JsonResponse:
    return _list(request, RunFilterForm(request.GET), Run.objects, RUN_ROW_FIELDS, run_json)


@api_view()
def run(request: HttpRequest, run_id) -> JsonResponse:
    found = Run.objects.filter(id=run_id).first()
    if found is None:
        return json_error(404, "not_found", f"No run has id {run_id}.")
    actions = [audit_json(entry) for entry in AuditEntry.of_run(found.id)]
    return JsonResponse({**run_json(found), "actions": actions})


@api_view()
def events(request: HttpRequest) -> JsonResponse:
    form = EventFilterForm(request.GET)
    return _list(request, form, Event.objects, EVENT_ROW_FIELDS, event_json)


@api_view()
def event(request: HttpRequest, event_id) -> JsonResponse:
    found = Event.objects.filter(id=event_id).first()
    if found is None:
        return json_error(404, "not_found", f"No event has id {event_id}.")
    run_ids = [str(i) for i in found.runs.values_list("id", flat=True)]
    return JsonResponse({**event_json(found), "run_ids": run_ids})


ACTIONS = {"retry": retry_run, "rerun": rerun, "cancel": cancel_run}


@api_view(methods=("POST",), permission=OPERATE)
def event_cancel(request: HttpRequest, event_id) -> JsonResponse:
    """Cancel a delayed event's runs that are still held for delivery."""
    try:
        cancelled = cancel_event(event_id, Actor(request.user, Via.API))
    except EventNotFound:
        return json_error(404, "not_found", f"No event has id {event_id}.")
    return JsonResponse({"id": str(event_id), "cancelled_runs": cancelled})


@api_view(methods=("POST",), permission=OPERATE)
def run_action(request: HttpRequest, run_id, action: str) -> JsonResponse:
    if action not in ACTIONS:
        return json_error(404, "not_found", f"No action {action!r}: retry, rerun or cancel.")
    try:
        outcome = ACTIONS[action](run_id, Actor(request.user, Via.API))
    except RunNotFound:
        return json_error(404, "not_found", f"No run has id {run_id}.")
    except HotError as exc:  # InvalidTransition: not in a state that allows it
        return json_error(409, "conflict", str(exc))
    if isinstance(outcome, Run):
        response = JsonResponse(run_json(outcome), status=201)
        response["Location"] = reverse("hot:api-run", args=[outcome.id])
        return response
    return JsonResponse({"id": str(run_id), "status": outcome})


@csrf_exempt  # answers 404 to every method; nothing to forge
def not_found(request: HttpRequest) -> JsonResponse:
    """Any other URL under api/: a JSON 404, not the project's HTML one."""
    message = f"No API endpoint at {request.path}."
    if not request.path.endswith("/"):
        try:
            if resolve(request.path_info + "/").url_name != "api-not-found":
                message += f" Did you mean {request.path}/ ?"
        except Resolver404:
            pass
    return json_error(404, "not_found", message)
