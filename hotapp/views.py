"""Hot App pages. For now: the newest runs and events, and one run with its lineage."""

from django.shortcuts import get_object_or_404, render

from hotapp.models import Event, Run

PAGE_SIZE = 50


def run_list(request):
    runs = Run.objects.order_by("-created_at", "-id")[:PAGE_SIZE]
    return render(request, "hotapp/runs.html", {"runs": runs})


def run_detail(request, run_id):
    run = get_object_or_404(Run.objects.select_related("event", "event__source_run"), id=run_id)
    origin_id = run.origin_run_id or run.id
    attempts = Run.objects.filter(id=origin_id) | Run.objects.filter(origin_run_id=origin_id)
    sent = Event.objects.filter(source_run=run).prefetch_related("runs").order_by("created_at")
    return render(
        request,
        "hotapp/run_detail.html",
        {
            "run": run,
            "attempts": attempts.order_by("attempt"),
            "sent_events": sent,
        },
    )


def event_list(request):
    events = Event.objects.order_by("-created_at", "-id").prefetch_related("runs")[:PAGE_SIZE]
    return render(request, "hotapp/events.html", {"events": events})
