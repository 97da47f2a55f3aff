"""Bulk actions from the runs page and the API: count first, confirm, then watch the operation.

The runs page's Bulk action is a GET form carrying the page's filters to the confirmation page,
which shows the dry run's count; its Confirm is a POST (CSRF, `hotapp.operate_run`) that
starts the operation on a worker (runtime.bulk) and redirects to its page, which refreshes
itself while it runs (htmx every second, or a meta refresh without JavaScript).
"""

import json
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from hotapp.api import api_login_required
from hotapp.filters import (
    NOT_A_FILTER,
    RunFilterForm,
    describe_run_filter,
    filter_pairs,
    run_filter_params,
)
from hotapp.models import BulkOperation, BulkVia
from runtime import HotError, bulk

RECENT = 50  # operations on the bulk operations page
LABELS = {"retry": "Retry failed runs", "cancel": "Cancel unfinished runs"}
DONE_WORD = {"retry": "retried", "cancel": "cancelled"}


def runs_url(params: dict) -> str:
    """The runs page showing exactly the runs of a filter."""
    return reverse("hot:run-list") + ("?" + urlencode(params, doseq=True) if params else "")


@require_http_methods(["GET", "POST"])
@login_required
@permission_required("hotapp.operate_run", raise_exception=True)
def bulk_new(request: HttpRequest) -> HttpResponse:
    """GET: the dry run and a Confirm button; POST: start the operation and go to its page."""
    data = request.POST if request.method == "POST" else request.GET
    action = data.get("action", "")
    params = run_filter_params(data)
    error = ""
    try:
        if request.method == "POST":
            operation = bulk.start_bulk(action, params, user=request.user, via=BulkVia.PAGE)
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


@login_required
def bulk_detail(request: HttpRequest, operation_id) -> HttpResponse:
    operation = get_object_or_404(BulkOperation, id=operation_id)
    template = "hotapp/bulk_detail.html"
    if request.htmx and request.htmx.target == "bulk-live":
        template += "#bulk-live"
    return render(request, template, operation_context(request, operation))


@require_POST
@login_required
@permission_required("hotapp.operate_run", raise_exception=True)
def bulk_stop(request: HttpRequest, operation_id) -> HttpResponse:
    operation = get_object_or_404(BulkOperation, id=operation_id)
    if bulk.stop_bulk(operation.id):
        messages.success(request, "Stopped. The batches done so far stay done.")
    else:
        messages.error(request, "This operation had finished already.")
    return redirect("hot:bulk-detail", operation_id=operation.id)


@login_required
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


@require_POST
@api_login_required
def api_bulk_start(request: HttpRequest) -> JsonResponse:
    """{"action": "retry"|"cancel", "filter": {the runs list's parameters}, "dry_run": bool}:
    the count (dry run), or 202 and the operation, which a worker then does."""
    if not request.user.has_perm("hotapp.operate_run"):
        return JsonResponse({"error": "You may not operate runs."}, status=403)
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"error": "The body is not JSON."}, status=400)
    if not isinstance(body, dict):
        return JsonResponse({"error": "The body must be a JSON object."}, status=400)
    action, params, dry_run = body.get("action", ""), body.get("filter", {}), body.get("dry_run")
    if not isinstance(params, dict) or set(params) - set(FILTER_NAMES):
        return JsonResponse(
            {"error": f"filter must be an object of the runs list's parameters: {FILTER_NAMES}"},
            status=400,
        )
    if not isinstance(dry_run, bool | None):
        return JsonResponse({"error": "dry_run must be true or false."}, status=400)
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
        operation = bulk.start_bulk(action, params, user=request.user, via=BulkVia.API)
    except HotError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    response = JsonResponse(operation_json(operation), status=202)
    response["Location"] = reverse("hot:api-bulk", args=[operation.id])
    return response


@require_GET
@api_login_required
def api_bulk(request: HttpRequest, operation_id) -> JsonResponse:
    return JsonResponse(operation_json(get_object_or_404(BulkOperation, id=operation_id)))
