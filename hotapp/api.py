"""A small JSON API over the same queries as the pages: runs, events, and the run actions.

Session authentication (log in through /login/), like the pages; actions are POSTs with the CSRF
token and the `hotapp.operate_run` permission. Lists take the pages' query parameters and page by
the `next` cursor.
"""

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_POST

from hotapp.filters import EventFilterForm, RunFilterForm, encode_cursor
from hotapp.models import Event, Run
from hotapp.querysets import filtered_page
from runtime import HotError, cancel_run, rerun, retry_run

PAGE_SIZE = 100


def api_login_required(view: Callable) -> Callable:
    """401 in JSON rather than a redirect to the login page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return JsonResponse({"error": "Log in first."}, status=401)
        return view(request, *args, **kwargs)

    return wrapper


def run_json(run: Run) -> dict:
    return {
        "id": str(run.id),
        "function": run.function,
        "trigger": run.trigger,
        "event_id": str(run.event_id) if run.event_id else None,
        "event_type": run.event_type,
        "stream_id": str(run.stream_id),
        "status": run.status,
        "attempt": run.attempt,
        "origin_run_id": str(run.origin_run_id) if run.origin_run_id else None,
        # A later attempt of its chain exists: a failed attempt that does not need attention.
        "is_superseded": run.is_superseded,
        "rerun_of_id": str(run.rerun_of_id) if run.rerun_of_id else None,
        "input": run.input,
        "result": run.result,
        "error": {
            "type": run.error_type,
            "message": run.error_message,
            "traceback": run.error_traceback,
        }
        if run.error_type
        else None,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_ms": run.duration_ms,
        "next_retry_at": run.next_retry_at,
        "recovery_count": run.recovery_count,
    }


def event_json(event: Event) -> dict:
    return {
        "id": str(event.id),
        "type": event.type,
        "data": event.data,
        "source_run_id": str(event.source_run_id) if event.source_run_id else None,
        "stream_id": str(event.stream_id),
        "is_handled": event.is_handled,
        "created_at": event.created_at,
    }


def _list(request: HttpRequest, form, queryset, to_json: Callable) -> JsonResponse:
    if not form.is_valid():
        return JsonResponse({"errors": form.error_messages()}, status=400)
    rows, cursor = filtered_page(queryset, form.cleaned_data, PAGE_SIZE)
    next_cursor = encode_cursor(*cursor) if cursor else None
    return JsonResponse({"results": [to_json(row) for row in rows], "next": next_cursor})


@require_GET
@api_login_required
def runs(request: HttpRequest) -> JsonResponse:
    return _list(request, RunFilterForm(request.GET), Run.objects, run_json)


@require_GET
@api_login_required
def run(request: HttpRequest, run_id) -> JsonResponse:
    return JsonResponse(run_json(get_object_or_404(Run, id=run_id)))


@require_GET
@api_login_required
def events(request: HttpRequest) -> JsonResponse:
    return _list(request, EventFilterForm(request.GET), Event.objects, event_json)


@require_GET
@api_login_required
def event(request: HttpRequest, event_id) -> JsonResponse:
    found = get_object_or_404(Event, id=event_id)
    return JsonResponse(
        {**event_json(found), "run_ids": [str(i) for i in found.runs.values_list("id", flat=True)]}
    )


ACTIONS = {"retry": retry_run, "rerun": rerun, "cancel": cancel_run}


@require_POST
@api_login_required
def run_action(request: HttpRequest, run_id, action: str) -> JsonResponse:
    if action not in ACTIONS:
        return JsonResponse({"error": f"No action {action!r}."}, status=404)
    if not request.user.has_perm("hotapp.operate_run"):
        return JsonResponse({"error": "You may not operate runs."}, status=403)
    try:
        outcome = ACTIONS[action](run_id)
    except HotError as exc:
        return JsonResponse({"error": str(exc)}, status=409)
    if isinstance(outcome, Run):
        return JsonResponse(run_json(outcome), status=201)
    return JsonResponse({"id": str(run_id), "status": outcome})
