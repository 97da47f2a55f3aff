"""Bulk actions from the runs page and the API: count first, confirm, then watch the operation.

The runs page's Bulk action is a GET form carrying the page's filters to the confirmation page,
which shows the dry run's count; its Confirm is a POST (CSRF, `hotapp.operate_run`) that
starts the operation on a worker (runtime.bulk) and redirects to its page, which refreshes
itself while it runs (htmx every second, or a meta refresh without JavaScript).
"""

import json
from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from hotapp.auth import OPERATE, api_view, json_error, operator_required, viewer_required
from hotapp.filters import (
    NOT_A_FILTER,
    RunFilterForm,
    describe_run_filter,
    filter_pairs,
    run_filter_params,
)
from hotapp.models import BulkOperation, Via
from runtime import Actor, HotError, bulk

RECENT = 50  # operations on the bulk operations page
LABELS = {"retry": "Retry failed runs", "cancel": "Cancel unfinished runs"}
DONE_WORD = {"retry": "retried", "cancel": "cancelled"}


def runs_url(params: dict) -> str:
    """The runs page showing exactly the runs of a filter."""
    return reverse("hot:run-list") + ("?" + urlencode(params, doseq=True) if params else "")


@require_http_methods(["GET", "POST"])
@operator_required
def bulk_new(request: HttpRequest) -> HttpResponse:
    """GET: the dry run and a Confirm button; POST: start the operation and go to its page."""
    data = request.POST if request.method == "POST" else request.GET
    action = data.get("action", "")
    params = run_filter_params(data)
    error = ""
    try:
        if request.method == "POST":
            operation = bulk.start_bulk(action, params, Actor(request.user, via=Via.PAGE))
            return redirect("hot:bulk-detail", operation_id=operation.id)
        count = bulk.preview(action, params)
    except HotError as exc:
        error, count = str(exc), 0
    return render(
        request,
        "hotapp/bulk_confirm.html",
        {
            "action": action,
            "label": LABELS.get(action, "Bulk action"),
            "count": count,
            "count_text": f"{count:,}",
            "description": bulk.describe(action, count, params) if not error else "",
            "filter_text": describe_run_filter(params),
            "hidden": filter_pairs(params),
            "error": error,
            "back_url": runs_url(params),
        },
    )


def operation_context(request: HttpRequest, operation: BulkOperation) -> dict:
    return {
        "operation": operation,
        "done_word": DONE_WORD[operation.kind],
        "filter_text": describe_run_filter(operation.filter),
        "runs_url": runs_url(run_filter_params(operation.filter)),
        "can_operate": request.user.has_perm("hotapp.operate_run"),
    }


@viewer_required
def bulk_detail(request: HttpRequest, operation_id) -> HttpResponse:
    operation = get_object_or_404(BulkOperation, id=operation_id)
    template = "hotapp/bulk_detail.html"
    if request.htmx and request.htmx.target == "bulk-live":
        template += "#bulk-live"
    return render(request, template, operation_context(request, operation))


@require_POST
@operator_required
def bulk_stop(request: HttpRequest, operation_id) -> HttpResponse:
    operation = get_object_or_404(BulkOperation, id=operation_id)
    if bulk.stop_bulk(operation.id):
        messages.success(request, "Stopped. The batches done so far stay done.")
    else:
        messages.error(request, "This operation had finished already.")
    return redirect("hot:bulk-detail", operation_id=operation.id)


@viewer_required
def bulk_list(request: HttpRequest) -> HttpResponse:
    operations = BulkOperation.objects.order_by("-created_at", "-id")[:RECENT]
    rows = [{"operation": op, "filter_text": describe_run_filter(op.filter)} for op in operations]
    return render(request, "hotapp/bulk_list.html", {"rows": rows, "recent": RECENT})


# The API: the same operations for scripts.


def operation_json(operation: BulkOperation) -> dict:
    return {
        "id": str(operation.id),
        "action": operation.kind,
        "filter": operation.filter,
        "status": operation.status,
        "total": operation.total,
        "done": operation.done,
        "skipped": operation.skipped,
        "failed": operation.failed,
        "last_error": operation.last_error or None,
        "created_by": operation.created_by_name or None,
        "via": operation.via,
        "created_at": operation.created_at,
        "started_at": operation.started_at,
        "finished_at": operation.finished_at,
        "url": reverse("hot:api-bulk", args=[operation.id]),
        "page_url": reverse("hot:bulk-detail", args=[operation.id]),
    }


FILTER_NAMES = [name for name in RunFilterForm.base_fields if name not in NOT_A_FILTER]


@api_view(methods=("POST",), permission=OPERATE)
def api_bulk_start(request: HttpRequest) -> JsonResponse:
    """{"action": "retry"|"cancel", "filter": {the runs list's parameters}, "dry_run": bool}:
    the count (dry run), or 202 and the operation, which a worker then does."""
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return json_error(400, "bad_request", "The body is not JSON.")
    if not isinstance(body, dict):
        return json_error(400, "bad_request", "The body must be a JSON object.")
    action, params, dry_run = body.get("action", ""), body.get("filter", {}), body.get("dry_run")
    if not isinstance(params, dict) or set(params) - set(FILTER_NAMES):
        return json_error(
            400,
            "bad_request",
            f"filter must be an object of the runs list's parameters: {FILTER_NAMES}",
        )
    if not isinstance(dry_run, bool | None):
        return json_error(400, "bad_request", "dry_run must be true or false.")
    try:
        if dry_run:
            count = bulk.preview(action, params)
            return JsonResponse(
                {
                    "action": action,
                    "filter": run_filter_params(params),
                    "count": count,
                    "description": bulk.describe(action, count, params),
                }
            )
        operation = bulk.start_bulk(action, params, Actor(request.user, via=Via.API))
    except HotError as exc:
        return json_error(400, "bad_request", str(exc))
    response = JsonResponse(operation_json(operation), status=202)
    response["Location"] = reverse("hot:api-bulk", args=[operation.id])
    return response


@api_view()
def api_bulk(request: HttpRequest, operation_id) -> JsonResponse:
    return JsonResponse(operation_json(get_object_or_404(BulkOperation, id=operation_id)))
