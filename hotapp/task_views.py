"""Hot App pages for tasks and schedules, and their actions."""

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from hotapp.auth import OPERATE, operator_required, viewer_required
from hotapp.filters import decode_cursor
from hotapp.models import AuditEntry, Run, Schedule, Task, TaskStatus, Via
from hotapp.querysets import PAGE_SIZE
from hotapp.views import next_page_url
from runtime import Actor, HotError
from runtime import schedules as schedule_runtime
from runtime.registry import all_handlers
from runtime.tasks import TaskHandle, cancel_task

# The task page shows at most this many of the newest messages and checkpoints.
MESSAGES_SHOWN = 500
CHECKPOINTS_SHOWN = 100
WAITS_SHOWN = 100


@viewer_required
def task_list(request: HttpRequest) -> HttpResponse:
    # The live cursor: changes stamped after this may be missing from what is read below.
    rendered_at = timezone.now()
    status, errors = request.GET.get("status", ""), []
    is_valid = not status or status in TaskStatus.values
    if not is_valid:
        # As on the runs list: a filter that cannot apply shows no rows and says why.
        errors.append(f"Status: {status!r} is not a task status ({', '.join(TaskStatus.values)}).")
    tasks = Task.objects.for_list().filtered({"status": status})
    after = None
    if request.GET.get("after"):
        try:
            after = decode_cursor(request.GET["after"])
        except ValidationError as exc:  # a broken cursor: say so, show the first page
            errors.extend(exc.messages)
    rows, cursor = tasks.page(after, PAGE_SIZE) if is_valid else ([], None)
    template = "hotapp/tasks.html"
    if request.htmx and request.htmx.target == "tasks-region":
        template += "#tasks-region"
    elif request.htmx and after is not None:  # "Load older tasks"
        template += "#task-rows"
    return render(
        request,
        template,
        {
            "tasks": rows,
            "next_url": next_page_url(request, cursor),
            "statuses": TaskStatus.choices,
            "selected": status,
            "errors": errors,
            # Only the first page takes new tasks: later pages update their rows in place.
            "is_first_page": after is None,
            "live_cursor": rendered_at.isoformat(),
        },
    )


def task_context(request: HttpRequest, task: Task) -> dict:
    # The newest messages and checkpoints, shown oldest first and newest first respectively;
    # counted only when there may be more than are shown.
    messages_list = list(task.messages.order_by("-id")[:MESSAGES_SHOWN])[::-1]
    checkpoints = list(task.checkpoints.order_by("-id")[:CHECKPOINTS_SHOWN])
    message_total = len(messages_list)
    if message_total == MESSAGES_SHOWN:
        message_total = task.messages.count()
    checkpoint_total = len(checkpoints)
    if checkpoint_total == CHECKPOINTS_SHOWN:
        checkpoint_total = task.checkpoints.count()
    waits = list(task.waits.order_by("-id")[:WAITS_SHOWN])
    for n, checkpoint in enumerate(checkpoints):
        checkpoint.number = checkpoint_total - n  # the task's own count, not the table's id
    return {
        "task": task,
        "attempts": task.runs.order_by("attempt", "created_at"),
        "checkpoints": checkpoints,
        "checkpoint_total": checkpoint_total,
        "older_checkpoints": checkpoint_total - len(checkpoints),
        "messages_list": messages_list,
        "message_total": message_total,
        "older_messages": message_total - len(messages_list),
        # Newest first; the one the task is suspended in, if any, is open (at most one is).
        "waits": waits,
        "open_wait": next((w for w in waits if w.is_open), None) if not task.is_terminal else None,
        "can_operate": request.user.has_perm(OPERATE),
        "history": task.audit_entries.order_by("id"),
    }


@viewer_required
def task_detail(request: HttpRequest, task_id) -> HttpResponse:
    task = get_object_or_404(Task.objects.select_related("parent_run"), id=task_id)
    template = "hotapp/task_detail.html"
    if request.htmx and request.htmx.target == "task-live":
        template += "#task-live"
    return render(request, template, task_context(request, task))


@require_POST
@operator_required
def task_action(request: HttpRequest, task_id, action: str) -> HttpResponse:
    task = get_object_or_404(Task, id=task_id)
    handle = TaskHandle(task.id)
    actor = Actor(request.user, Via.PAGE)
    try:
        if action == "cancel":
            if cancel_task(task.id, actor):
                messages.success(request, "Cancel requested.")
            else:
                messages.error(request, f"This task is {task.status}; it cannot be cancelled.")
        elif action == "send":
            try:
                body = json.loads(request.POST.get("message", ""))
            except json.JSONDecodeError as exc:
                messages.error(request, f"The message is not valid JSON: {exc}")
            else:
                handle.send(body, actor)
                messages.success(request, "Message sent.")
        elif action == "close":
            handle.close(actor)
            messages.success(request, "Inbox closed: receive() returns None once it is empty.")
        else:
            return HttpResponse("No such action.", status=404)
    except HotError as exc:
        messages.error(request, str(exc))
    if request.htmx:
        task.refresh_from_db()
        return render(request, "hotapp/task_detail.html#task-live", task_context(request, task))
    return redirect("hot:task-detail", task_id=task.id)


@viewer_required
def schedule_list(request: HttpRequest) -> HttpResponse:
    rows = schedule_runtime.sync()  # one SELECT, which the page needs anyway
    now = timezone.now()
    # Who paused or resumed each schedule last: the newest entry of each, in one query.
    newest = (
        AuditEntry.objects.filter(schedule__in=rows.values())
        .values("schedule_id")
        .annotate(newest=Max("id"))
        .values("newest")
    )
    last_change = {e.schedule_id: e for e in AuditEntry.objects.filter(id__in=newest)}
    items = []
    for handler in all_handlers("schedule"):
        cron = handler.options["cron"]
        row = rows.get(handler.name)
        recent = Run.objects.filter(function=handler.name, trigger="schedule").order_by(
            "-created_at"
        )[:8]
        described = cron.describe()
        # Words only where they say more than the expression ("every 10 seconds" says it all).
        if described.startswith("cron:") or described == cron.expression.strip():
            described = ""
        items.append(
            {
                "name": handler.name,
                "row": row,
                "cron": cron,
                "description": described,
                "next_fires": [] if row and row.is_paused else cron.fire_times(now, 3),
                "recent": recent,
                "last_change": last_change.get(row.id) if row else None,
            }
        )
    return render(request, "hotapp/schedules.html", {"schedules": items})


@require_POST
@operator_required
def schedule_action(request: HttpRequest, schedule_id: int, action: str) -> HttpResponse:
    schedule = get_object_or_404(Schedule, id=schedule_id)
    if action == "pause":
        schedule_runtime.pause(schedule.name, Actor(request.user, Via.PAGE))
        messages.success(request, f"{schedule.name} paused.")
    elif action == "resume":
        schedule_runtime.resume(schedule.name, Actor(request.user, Via.PAGE))
        messages.success(request, f"{schedule.name} resumed; it fires from its next tick.")
    else:
        return HttpResponse("No such action.", status=404)
    return redirect("hot:schedule-list")
