"""Hot App pages: overview, runs, run detail, events, event detail; and the run actions.

Every page needs the `hotapp.view_run` permission; actions also need `hotapp.operate_run`
(hotapp/auth.py). The same template serves a full page and its htmx fragments (template
partials).
"""

from datetime import timedelta

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from hotapp import filters, querysets
from hotapp.auth import OPERATE, operator_required, viewer_required
from hotapp.filters import EventFilterForm, RunFilterForm, encode_cursor
from hotapp.lineage import stream_graph
from hotapp.models import TERMINAL_STATUSES, AuditEntry, Event, Run, RunTrace, Via
from hotapp.querysets import PAGE_SIZE, filtered_page, minutes_back
from hotapp.templatetags.hot import when
from runtime import Actor, HotError, cancel_event, cancel_run, rerun, retry_run
from runtime.registry import all_handlers, subscribed_event_types


def next_page_url(request: HttpRequest, cursor) -> str:
    """This page's URL, filters and all, moved on to `cursor`; "" when there is no next page."""
    if cursor is None:
        return ""
    params = request.GET.copy()
    params["after"] = encode_cursor(*cursor)
    return "?" + params.urlencode()


def _filter_choices() -> dict:
    return {
        "functions": [h.name for h in all_handlers()],
        "event_types": subscribed_event_types(),
    }


def _list_context(request: HttpRequest, form, queryset) -> dict:
    """The filter form, one page of rows (none if the filters are invalid) and the next page."""
    rows: list = []
    cursor = None
    if form.is_valid():
        rows, cursor = filtered_page(queryset, form.cleaned_data, PAGE_SIZE)
    return {
        "form": form,
        "errors": form.error_messages(),
        "rows": rows,
        "next_url": next_page_url(request, cursor),
        # A bounded free-text search stopped at the end of its window (hotapp/querysets.py).
        "is_window_spent": cursor is not None and len(rows) < PAGE_SIZE,
        "search_window": querysets.SEARCH_WINDOW,
        **_filter_choices(),
    }


@viewer_required
def run_list(request: HttpRequest) -> HttpResponse:
    context = _list_context(request, RunFilterForm(request.GET), Run.objects.for_list())
    context.update(
        {
            "runs": context["rows"],
            # Run statuses, "failed" labelled "Needs attention", and every failed attempt.
            "statuses": context["form"].fields["status"].choices,
            "selected_statuses": request.GET.getlist("status"),
            "is_first_page": not request.GET.get("after"),
            "live_cursor": timezone.now().isoformat(),
            # The Bulk action's hidden fields: this list's filters (hotapp/bulk_views.py).
            "bulk_filter": filters.filter_pairs(filters.run_filter_params(request.GET)),
        }
    )
    # The region first: a live reload of a later page asks for the region, not its rows.
    if request.htmx and request.htmx.target == "runs-region":
        return render(request, "hotapp/runs.html#runs-region", context)
    if request.htmx and request.GET.get("after"):
        return render(request, "hotapp/runs.html#run-rows", context)
    return render(request, "hotapp/runs.html", context)


def _attempts(run: Run) -> list[Run]:
    origin_id = run.origin_run_id or run.id
    return list(Run.objects.filter(id=origin_id).union(Run.objects.filter(origin_run_id=origin_id)))


def run_context(request: HttpRequest, run: Run) -> dict:
    trace = RunTrace.objects.filter(run=run).values("span_count", "is_truncated").first()
    attempts = sorted(_attempts(run), key=lambda r: r.attempt)
    return {
        "run": run,
        "attempts": attempts,
        # Only the newest attempt of a chain can be retried (an older one already was).
        "is_latest_attempt": run.attempt == attempts[-1].attempt,
        # The chain's outcome, which a superseded (retried) attempt's page tells.
        "latest_attempt": attempts[-1],
        "graph": stream_graph(run.stream_id, run.id),
        "trace_info": trace,
        "can_operate": request.user.has_perm(OPERATE),
        "is_terminal": run.status in TERMINAL_STATUSES,
        "history": AuditEntry.of_run(run.id).select_related("run", "result_run"),
        # The alerts this attempt raised (its foreign key's index), newest last.
        "alerts": run.alert_deliveries.order_by("created_at")[:20],
    }


@viewer_required
def run_detail(request: HttpRequest, run_id) -> HttpResponse:
    run = get_object_or_404(
        Run.objects.select_related("event", "event__source_run", "rerun_of", "task"), id=run_id
    )
    template = "hotapp/run_detail.html"
    if request.htmx and request.htmx.target == "run-live":
        template += "#run-live"
    return render(request, template, run_context(request, run))


@viewer_required
def run_trace(request: HttpRequest, run_id) -> JsonResponse:
    trace = RunTrace.objects.filter(run_id=run_id).values_list("data", flat=True).first()
    if trace is None:
        raise Http404("This run has no trace.")
    return JsonResponse(trace)


ACTIONS = {"retry": retry_run, "rerun": rerun, "cancel": cancel_run}
DONE = {
    "retry": "Retry queued as attempt {attempt}.",
    "rerun": "Rerun queued.",
    "cancel": "Cancel requested.",
}


@require_POST
@operator_required
def run_action(request: HttpRequest, run_id, action: str) -> HttpResponse:
    if action not in ACTIONS:
        raise Http404("No such action.")
    try:
        outcome = ACTIONS[action](run_id, Actor(request.user, Via.PAGE))
    except HotError as exc:
        messages.error(request, str(exc))
    else:
        attempt = getattr(outcome, "attempt", None)
        messages.success(request, DONE[action].format(attempt=attempt))
        if action == "rerun":
            # A rerun is a new run in a new stream: go and watch it.
            return redirect("hot:run-detail", run_id=outcome.id)
    if request.htmx:
        run = get_object_or_404(Run.objects.select_related("event", "event__source_run"), id=run_id)
        return render(request, "hotapp/run_detail.html#run-live", run_context(request, run))
    return redirect("hot:run-detail", run_id=run_id)


@viewer_required
def event_list(request: HttpRequest) -> HttpResponse:
    context = _list_context(request, EventFilterForm(request.GET), Event.objects.for_list())
    context.update(
        {
            "events": context["rows"],
            "is_first_page": not request.GET.get("after"),
            "live_cursor": timezone.now().isoformat(),
        }
    )
    # The region first: a live reload of a later page asks for the region, not its rows.
    if request.htmx and request.htmx.target == "events-region":
        return render(request, "hotapp/events.html#events-region", context)
    if request.htmx and request.GET.get("after"):
        return render(request, "hotapp/events.html#event-rows", context)
    return render(request, "hotapp/events.html", context)


# A delayed event's runs wait for its time, or for a debounced handler's quiet period after it.
HELD_FOR_DELIVERY = ("delay", "debounce")


@viewer_required
def event_detail(request: HttpRequest, event_id) -> HttpResponse:
    event = get_object_or_404(Event.objects.select_related("source_run"), id=event_id)
    runs = list(event.runs.order_by("created_at", "attempt"))
    return render(
        request,
        "hotapp/event_detail.html",
        {
            "event": event,
            "runs": runs,
            "graph": stream_graph(event.stream_id, event.id),
            "is_held": any(
                r.status == "queued" and r.wait_reason in HELD_FOR_DELIVERY for r in runs
            ),
            # Cancelled while held: the hold's reason stays on the run.
            "is_delivery_cancelled": any(
                r.status == "cancelled" and r.wait_reason in HELD_FOR_DELIVERY for r in runs
            ),
            "can_operate": request.user.has_perm("hotapp.operate_run"),
        },
    )


@require_POST
@operator_required
def event_cancel(request: HttpRequest, event_id) -> HttpResponse:
    """Cancel a delayed event before it is due (its runs still held for delivery)."""
    cancelled = cancel_event(event_id, Actor(request.user, Via.PAGE))
    if cancelled:
        messages.success(request, f"Delivery cancelled: {cancelled} held run(s) cancelled.")
    else:
        messages.error(request, "Nothing to cancel: this event's runs are no longer held.")
    return redirect("hot:event-detail", event_id=event_id)


def bars(counts: list[dict], bar_width: float, height: float, base: float) -> list[dict]:
    """SVG geometry of a bar per count ({"total", "failed"}) standing on y = `base`, the highest
    total `height` tall; the failures are drawn over each bar from its foot."""
    peak = max((c["total"] for c in counts), default=0) or 1
    geometry = []
    for i, count in enumerate(counts):
        total_height = height * count["total"] / peak
        failed_height = height * count["failed"] / peak
        # As SVG wants them (a dot, one decimal) whatever the locale, formatted here: the
        # overview draws up to 26 charts of 60 bars, too many for template filters per bar.
        geometry.append(
            {
                **count,
                "x": f"{i * bar_width:.1f}",
                "y": f"{base - total_height:.1f}",
                "height": f"{total_height:.1f}",
                "failed_y": f"{base - failed_height:.1f}",
                "failed_height": f"{failed_height:.1f}",
            }
        )
    return geometry


OVERVIEW_FUNCTIONS = 25  # the busiest functions the overview charts


@viewer_required
def overview(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(days=1)
    start = minutes_back(now, 60)
    minutes = [start + timedelta(minutes=i) for i in range(60)]

    # Each minute's name, once for every chart that has a bar for it.
    labels = {m: when(m, "minute text") for m in minutes}

    def empty_cells() -> dict:
        return {
            m: {"minute": m, "label": labels[m], "total": 0, "failed": 0, "superseded": 0}
            for m in minutes
        }

    overall = empty_cells()
    by_function: dict[str, dict] = {}
    for row in Run.objects.per_function_minute(start):
        cells = by_function.setdefault(row["function"], empty_cells())
        for cell in (overall[row["minute"]], cells[row["minute"]]):
            for key in ("total", "failed", "superseded"):
                cell[key] += row[key]
    functions = []
    for name, cells in by_function.items():
        total = sum(c["total"] for c in cells.values())
        failed = sum(c["failed"] for c in cells.values())
        # A chain counts once, by its latest attempt: the retried attempts are left out.
        chains = total - sum(c["superseded"] for c in cells.values())
        functions.append(
            {
                "function": name,
                "total": total,
                "failed": failed,
                "chains": chains,
                "failure_rate": failed / chains if chains else 0.0,
                "peak": max(c["total"] for c in cells.values()),
                # 60 bars of 3 units in a 180 x 24 sparkline.
                "bars": bars(list(cells.values()), 3, 24, 24),
            }
        )
    functions.sort(key=lambda f: (-f["total"], f["function"]))
    buckets = bars(list(overall.values()), 10, 140, 150)  # the 600 x 160 chart, axis at 150
    hour_counts = Run.objects.status_counts(hour_ago)
    day_counts = Run.objects.status_counts(day_ago)
    return render(
        request,
        "hotapp/overview.html",
        {
            "status_rows": [
                (value, label, hour_counts.get(value, 0), day_counts.get(value, 0))
                for value, label in RunFilterForm.base_fields["status"].choices
                if value != querysets.ALL_FAILED_ATTEMPTS
            ],
            # Nothing hidden: the failed attempts a retry made good, and all of them.
            "recovered": (hour_counts[querysets.RECOVERED], day_counts[querysets.RECOVERED]),
            "failed_attempts": (
                hour_counts[querysets.ALL_FAILED_ATTEMPTS],
                day_counts[querysets.ALL_FAILED_ATTEMPTS],
            ),
            "buckets": buckets,
            "peak": max(b["total"] for b in buckets),
            "functions": functions[:OVERVIEW_FUNCTIONS],
            "more_functions": len(functions) - OVERVIEW_FUNCTIONS,
            "failures": Run.objects.recent_failures(10),
        },
    )
