"""Hot App pages for tasks and schedules, and their actions."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from hotapp.filters import decode_cursor
from hotapp.models import Run, Schedule, Task, TaskStatus
from hotapp.views import next_page_url
from runtime import HotError
from runtime import schedules as schedule_runtime
from runtime.registry import all_handlers
from runtime.tasks import TaskHandle, cancel_task

PAGE_SIZE = 50


@login_required
def task_list(request: HttpRequest) -> HttpResponse:
    tasks = Task.objects.annotate(
        checkpoint_count=Count("checkpoints", distinct=True),
        attempt_count=Count("runs", distinct=True),
    )
    status = request.GET.get("status", "")
    if status in TaskStatus.values:
        tasks = tasks.filter(status=status)
    after, error = None, ""
    if request.GET.get("after"):
        try:
            after = decode_cursor(request.GET["after"])
        except ValidationError as exc:  # a broken cursor: say so, show the first page
            error = " ".join(exc.messages)
    rows, cursor = tasks.page(after, PAGE_SIZE)
    next_url = next_page_url(request, cursor)
    return render(
        request,
        "hotapp/tasks.html",
        {
            "tasks": rows,
            "next_url": next_url,
            "statuses": TaskStatus.choices,
            "selected": status,
            "error": error,
        },
    )


def task_context(request: HttpRequest, task: Task) -> dict:
    return {
        "task": task,
        "attempts": task.runs.order_by("attempt", "created_at"),
        "checkpoints": list(task.checkpoints.order_by("-id")[:100]),
        "checkpoint_total": task.checkpoints.count(),
        "messages_list": list(task.messages.order_by("id")[:500]),
        "can_operate": request.user.has_perm("hotapp.operate_run"),
    }


@login_required
def task_detail(request: HttpRequest, task_id) -> HttpResponse:
    task = get_object_or_404(Task.objects.select_related("parent_run"), id=task_id)
    template = "hotapp/task_detail.html"
    if request.htmx and request.htmx.target == "task-live":
        template += "#task-live"
    return render(request, template, task_context(request, task))


@require_POST
@login_required
@permission_required("hotapp.operate_run", raise_exception=True)
def task_action(request: HttpRequest, task_id, action: str) -> HttpResponse:
    task = get_object_or_404(Task, id=task_id)
    handle = TaskHandle(task.id)
    try:
        if action == "cancel":
            if cancel_task(task.id):
                messages.success(request, "Cancel requested.")
            else:
                messages.error(request, f"This task is {task.status}; it cannot be cancelled.")
        elif action == "send":
            try:
                body = json.loads(request.POST.get("message", ""))
            except json.JSONDecodeError as exc:
                messages.error(request, f"The message is not valid JSON: {exc}")
            else:
                handle.send(body)
                messages.success(request, "Message sent.")
        elif action == "close":
            handle.close()
            messages.success(request, "Inbox closed: receive() returns None once it is empty.")
        else:
            return HttpResponse("No such action.", status=404)
    except HotError as exc:
        messages.error(request, str(exc))
    if request.htmx:
        task.refresh_from_db()
        return render(request, "hotapp/task_detail.html#task-live", task_context(request, task))
    return redirect("task-detail", task_id=task.id)


@login_required
def schedule_list(request: HttpRequest) -> HttpResponse:
    schedule_runtime.sync()
    now = timezone.now()
    rows = {row.name: row for row in Schedule.objects.all()}
    items = []
    for handler in all_handlers("schedule"):
        cron = handler.options["cron"]
        row = rows.get(handler.name)
        recent = Run.objects.filter(function=handler.name, trigger="schedule").order_by(
            "-created_at"
        )[:8]
        items.append(
            {
                "name": handler.name,
                "row": row,
                "cron": cron,
                "next_fires": [] if row and row.is_paused else cron.fire_times(now, 3),
                "recent": recent,
            }
        )
    return render(request, "hotapp/schedules.html", {"schedules": items})


@require_POST
@login_required
@permission_required("hotapp.operate_run", raise_exception=True)
def schedule_action(request: HttpRequest, schedule_id: int, action: str) -> HttpResponse:
    schedule = get_object_or_404(Schedule, id=schedule_id)
    if action == "pause":
        schedule_runtime.pause(schedule.name)
        messages.success(request, f"{schedule.name} paused.")
    elif action == "resume":
        schedule_runtime.resume(schedule.name)
        messages.success(request, f"{schedule.name} resumed; it fires from its next tick.")
    else:
        return HttpResponse("No such action.", status=404)
    return redirect("schedule-list")
