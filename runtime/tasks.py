"""Tasks: long-running functions with checkpoints and messages.

    from runtime import task, start

    @task(timeout=3600, retry=3)
    def import_orders(ctx):
        state = ctx.restore() or {"page": 0}
        while (message := ctx.receive(timeout=5)) is not None:
            ...
            state["page"] += 1
            ctx.checkpoint(state)          # a crash resumes from here
        return {"pages": state["page"]}

    handle = start(import_orders, {"source": "s3://bucket"})
    handle.send({"page": 1}); handle.close(); handle.result(timeout=60)

Each attempt is a Run (trigger=task) on its own Celery queue (HOT_TASK_QUEUE), so long tasks never
starve event handlers. An attempt interrupted by a crash (lease recovery) or a failure with retries
left starts again with `ctx.restore()` returning the newest checkpoint, and the inbox messages it
had taken since that checkpoint are handed out again.
"""

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from hotapp.conf import hot_settings
from hotapp.ids import uuid7
from hotapp.models import (
    TASK_TERMINAL_STATUSES,
    AuditAction,
    MessageDirection,
    Run,
    RunStatus,
    Task,
    TaskCheckpoint,
    TaskMessage,
    TaskStatus,
    Trigger,
)
from runtime import audit, dispatch, registry, waits
from runtime.audit import Actor
from runtime.context import Event, RunContext, current_run
from runtime.exceptions import HandlerNotFound, TaskFailed, TaskNotFound
from runtime.live import runs_changed
from runtime.payloads import check_json
from runtime.retry_policy import Retry, as_policy

ACTIVE_RUN_STATUSES = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PENDING_RETRY]
# Tasks the sweeper times out past their deadline: a task's timeout counts its waits.
UNDERWAY_STATUSES = [TaskStatus.RUNNING, TaskStatus.WAITING]


def task(
    fn: Callable[..., Any] | None = None,
    *,
    timeout: float | timedelta | None = None,
    retry: int | Retry | None = None,
    name: str | None = None,
    trace: bool = True,
    retention_days: float | None = None,
):
    """Declare a long-running task: a function taking one argument, its TaskContext.

    `timeout` (seconds or a timedelta) bounds the whole task from its first start; `retry` is as
    for `@on_event`. A finished task, with its attempts, checkpoints and messages, is kept
    `retention_days` (default HOT["RETENTION_DAYS"]) after it finished.
    """
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    if seconds is not None and seconds <= 0:
        raise ValueError("A task's timeout must be positive")
    policy = as_policy(retry)
    keep = registry.check_retention_days(retention_days)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        handler = registry.Handler(
            registry.handler_name(fn, name),
            fn,
            "",
            policy,
            trace,
            kind="task",
            options={"timeout": seconds},
            retention_days=keep,
        )
        registry.register(handler)
        fn.hot_task_name = handler.name  # type: ignore[attr-defined]
        return fn

    return decorate(fn) if fn is not None else decorate


def start(fn_or_name: Callable[..., Any] | str, input: Any = None) -> "TaskHandle":
    """Start a task; returns its handle at once.

    From outside a run the task exists when this returns (or when the caller's transaction
    commits). Inside a handler it is created with the run's success, like a sent event.
    """
    name = fn_or_name if isinstance(fn_or_name, str) else getattr(fn_or_name, "hot_task_name", "")
    handler = registry.handler_named(name)
    if handler is None or handler.kind != "task":
        raise HandlerNotFound(f"No task named {name or fn_or_name!r} is registered")
    # A copy of what was checked: inside a run the task is created only when the run succeeds,
    # and the caller may change its object before then.
    input = json.loads(check_json({} if input is None else input, f"Input of task {name}"))
    ctx = current_run()
    task_id = uuid7()

    def create() -> None:
        now = timezone.now()
        policy = handler.retry.as_dict()
        Task.objects.create(
            id=task_id,
            name=name,
            input=input,
            stream_id=ctx.stream_id if ctx else task_id,
            parent_run_id=ctx.run_id if ctx else None,
            retry_policy=policy,
            timeout_seconds=handler.options.get("timeout"),
            created_at=now,
            updated_at=now,
        )
        run = Run.objects.create(
            function=name,
            trigger=Trigger.TASK,
            task_id=task_id,
            input=input,
            stream_id=ctx.stream_id if ctx else task_id,
            retry_policy=policy,
            created_at=now,
            updated_at=now,
            queued_at=now,
        )
        dispatch.enqueue_on_commit([run.id], dispatch.queue_for(Trigger.TASK))
        runs_changed()

    if ctx is not None:
        ctx.check_cancelled()
        ctx.on_success.append(create)
    else:
        with transaction.atomic():
            create()
    return TaskHandle(task_id)


def _touch(task_id: uuid.UUID, **fields: Any) -> int:
    """Update a task row and stamp it, so its page hears of the change."""
    changed = Task.objects.filter(id=task_id).update(updated_at=timezone.now(), **fields)
    runs_changed()
    return changed


class TaskContext:
    """What a task function gets: its input, checkpoints and messages."""

    def __init__(self, run: Run, ctx: RunContext, deadline_at: datetime | None = None) -> None:
        assert run.task_id is not None
        self.task_id: uuid.UUID = run.task_id
        self.input = run.input
        self.attempt = run.attempt
        self._run_id = run.id
        self._ctx = ctx
        # For durable waits (runtime.waits): whose claim this attempt runs under, the task's
        # deadline, and how many wait calls this execution has made.
        self.claim_token = run.claimed_by
        self.deadline_at = deadline_at
        self._wait_calls = 0

    @property
    def run_id(self) -> uuid.UUID:
        return self._run_id

    @property
    def run_context(self) -> RunContext:
        return self._ctx

    def sleep(self, seconds: float | timedelta, *, key: str | None = None) -> None:
        """Sleep durably: the task is suspended, holding no worker, and runs again from the top
        after `seconds`, this call then returning at once. See runtime.waits for the replay
        rule; `key` names the wait instead of its order among this run's wait calls."""
        waits.sleep(self, seconds, key)

    def wait_for_event(
        self,
        event_type: str,
        *,
        match: dict | None = None,
        timeout: float | timedelta | None = None,
        key: str | None = None,
    ) -> Event | None:
        """Wait durably for the first event of `event_type` whose data contains `match`, sent
        after this wait began; returns it (an Event: id, type, data), or None once `timeout`
        seconds have passed. Suspended meanwhile like sleep()."""
        return waits.wait_for_event(self, event_type, match, timeout, key)

    def next_wait_key(self, key: str | None) -> str:
        if key is None:
            self._wait_calls += 1
            return f"#{self._wait_calls}"
        if not isinstance(key, str) or not key or key.startswith("#") or len(key) > 200:
            raise ValueError(
                f"A wait's key is a string of 1-200 characters not starting with #: {key!r}"
            )
        return key

    def check_cancelled(self) -> None:
        """Raise Cancelled or TaskTimedOut if the task was cancelled or ran out of time."""
        self._ctx.check_cancelled()

    def checkpoint(self, state: Any) -> None:
        """Save `state` (JSON) durably; a restarted attempt's `restore()` returns it."""
        self.check_cancelled()
        check_json(state, "Checkpoint state")
        with transaction.atomic():
            TaskCheckpoint.objects.create(task_id=self.task_id, run_id=self._run_id, state=state)
            _touch(self.task_id)
            # What was sent before a checkpoint is committed with it: a resumed attempt skips
            # that code, so it must not wait for the task's success (and may be lost with it).
            if (
                self._ctx.outbox or self._ctx.on_success
            ) and Run.objects.select_for_update().filter(
                id=self._run_id, status=RunStatus.RUNNING, claimed_by=self.claim_token
            ).exists():
                waits.flush_outbox(self)

    def restore(self) -> Any:
        """The newest checkpoint's state, or None if there is none."""
        return (
            TaskCheckpoint.objects.filter(task_id=self.task_id)
            .order_by("-id")
            .values_list("state", flat=True)
            .first()
        )

    def send(self, message: Any) -> None:
        """Send a message out of the task (kept, and shown on its page)."""
        check_json(message, "Task message")
        with transaction.atomic():
            TaskMessage.objects.create(
                task_id=self.task_id, direction=MessageDirection.OUT, body=message
            )
            _touch(self.task_id)

    def receive(self, timeout: float | None = None) -> Any:
        """The next inbox message; None after `timeout` seconds, or once the inbox is closed
        and empty. Cancellation and the task's timeout take effect while it waits."""
        give_up = None if timeout is None else time.monotonic() + timeout
        poll = hot_settings()["TASK_POLL_SECONDS"]
        while True:
            self.check_cancelled()
            found, body = self._take_next()
            if found:
                return body
            if Task.objects.filter(id=self.task_id, is_inbox_closed=True).exists():
                return None
            if give_up is not None and time.monotonic() >= give_up:
                return None
            time.sleep(poll if give_up is None else max(0.0, min(poll, give_up - time.monotonic())))

    def _take_next(self) -> tuple[bool, Any]:
        inbox = TaskMessage.objects.filter(
            task_id=self.task_id, direction=MessageDirection.IN, consumed_at__isnull=True
        )
        for _ in range(10):
            row = inbox.order_by("id").values_list("id", "body").first()
            if row is None:
                return False, None
            # Conditional: of two attempts racing for a message (a stale one and its recovery),
            # only one takes it.
            if inbox.filter(id=row[0]).update(consumed_at=timezone.now(), consumed_by=self._run_id):
                _touch(self.task_id)
                return True, row[1]
        return False, None


def begin_attempt(run: Run, ctx: RunContext) -> TaskContext:
    """Called by the executor after claiming a task's run: mark the task running, arm its
    deadline, and hand out again the messages taken since the newest checkpoint."""
    now = timezone.now()
    task = Task.objects.get(id=run.task_id)
    if task.status == TaskStatus.QUEUED:
        deadline = now + timedelta(seconds=task.timeout_seconds) if task.timeout_seconds else None
        if _touch(task.id, status=TaskStatus.RUNNING, started_at=now, deadline_at=deadline):
            task.deadline_at = deadline
    elif task.status == TaskStatus.WAITING:  # resumed from a durable wait
        Task.objects.filter(id=task.id, status=TaskStatus.WAITING).update(
            status=TaskStatus.RUNNING, updated_at=now
        )
        runs_changed()
    if task.deadline_at is not None:
        ctx.deadline = time.monotonic() + (task.deadline_at - now).total_seconds()
    if task.cancel_requested_at is not None:
        ctx.is_cancel_requested = True
    newest = task.checkpoints.order_by("-id").values_list("created_at", flat=True).first()
    taken = TaskMessage.objects.filter(
        task_id=task.id, direction=MessageDirection.IN, consumed_at__isnull=False
    )
    if newest is not None:
        taken = taken.filter(consumed_at__gt=newest)
    taken.update(consumed_at=None, consumed_by=None)
    return TaskContext(run, ctx, task.deadline_at)


def record_outcome(task_id: uuid.UUID, status: str, **fields: Any) -> None:
    """Called inside the transaction that ends a task's run (executor, sweeper)."""
    now = timezone.now()
    if (
        Task.objects.filter(id=task_id)
        .exclude(status__in=TASK_TERMINAL_STATUSES)
        .update(status=status, finished_at=now, updated_at=now, **fields)
    ):
        waits.abandon(task_id, now)


class TaskHandle:
    """A started task, seen from outside."""

    def __init__(self, task_id: uuid.UUID | str) -> None:
        self.id = task_id if isinstance(task_id, uuid.UUID) else uuid.UUID(str(task_id))

    def __repr__(self) -> str:
        return f"<TaskHandle {self.id}>"

    def _task(self) -> Task:
        try:
            return Task.objects.get(id=self.id)
        except Task.DoesNotExist:
            raise TaskNotFound(f"No task has id {self.id}") from None

    @property
    def status(self) -> str:
        return self._task().status

    # Messages and closing the inbox are a program's ordinary conversation with its task, often
    # many a second: they are recorded only when an actor says who sent them (the dashboard and
    # the API do), unlike cancelling, which is always recorded.
    def send(self, message: Any, actor: Actor | None = None) -> None:
        """Put a message in the task's inbox."""
        check_json(message, "Task message")
        task = self._task()
        if task.is_terminal or task.is_inbox_closed:
            raise TaskFailed(f"Task {self.id} is {task.status}; its inbox takes no messages")
        with transaction.atomic():
            TaskMessage.objects.create(task_id=self.id, direction=MessageDirection.IN, body=message)
            _touch(self.id)
            if actor is not None:
                audit.record(AuditAction.TASK_SEND, actor, task_id=self.id)

    def close(self, actor: Actor | None = None) -> None:
        """No more messages: `receive()` returns None once the inbox is empty."""
        with transaction.atomic():
            if _touch(self.id, is_inbox_closed=True) and actor is not None:
                audit.record(AuditAction.TASK_CLOSE, actor, task_id=self.id)

    def cancel(self, actor: Actor | None = None) -> bool:
        """Cancel the task; False if it had already finished."""
        return cancel_task(self.id, actor)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the task to finish and return its result; raise TaskFailed if it failed,
        timed out or was cancelled, and TimeoutError if it is still going after `timeout`."""
        give_up = None if timeout is None else time.monotonic() + timeout
        while True:
            task = self._task()
            if task.status == TaskStatus.COMPLETED:
                return task.result
            if task.is_terminal:
                detail = f": {task.error_type}: {task.error_message}" if task.error_type else ""
                raise TaskFailed(f"Task {self.id} {task.status}{detail}")
            if give_up is not None and time.monotonic() >= give_up:
                raise TimeoutError(f"Task {self.id} is still {task.status}")
            time.sleep(0.05)

    def checkpoints(self) -> list[Any]:
        return list(
            TaskCheckpoint.objects.filter(task_id=self.id)
            .order_by("id")
            .values_list("state", flat=True)
        )

    def messages(self, direction: str | None = None) -> list[Any]:
        rows = TaskMessage.objects.filter(task_id=self.id).order_by("id")
        if direction:
            rows = rows.filter(direction=direction)
        return list(rows.values_list("body", flat=True))


def cancel_task(task_id: uuid.UUID | str, actor: Actor | None = None) -> bool:
    """Cancel a queued or running task: its unstarted attempts at once, a running one
    cooperatively (then forcefully after HOT_CANCEL_GRACE_SECONDS)."""
    from runtime.actions import cancel_unrecorded

    now = timezone.now()
    with transaction.atomic():
        if (
            not Task.objects.filter(id=task_id)
            .exclude(status__in=TASK_TERMINAL_STATUSES)
            .update(cancel_requested_at=now, updated_at=now)
        ):
            return False
        still_running = False
        for run_id in Run.objects.filter(
            task_id=task_id, status__in=ACTIVE_RUN_STATUSES
        ).values_list("id", flat=True):
            still_running |= cancel_unrecorded(run_id) == RunStatus.RUNNING
        if not still_running:
            record_outcome(uuid.UUID(str(task_id)), TaskStatus.CANCELLED)
        audit.record(AuditAction.TASK_CANCEL, actor, task_id=task_id)
    runs_changed()
    return True


def settle_orphans() -> int:
    """Sweeper step: a task left unfinished while none of its runs is active (a run ended by the
    sweeper rather than a worker) takes the outcome of its newest run."""
    settled = 0
    # A task's run ends in the same transaction that records the task's outcome, and a retry's
    # new attempt is inserted with the old one's end: a task seen here has no run left to wait on.
    unfinished = Task.objects.exclude(status__in=TASK_TERMINAL_STATUSES)
    for task in unfinished.exclude(runs__status__in=ACTIVE_RUN_STATUSES)[:500]:
        last = task.runs.order_by("-attempt", "-created_at").first()
        if last is None:
            continue
        if last.status == RunStatus.SUCCEEDED:
            outcome = {"status": TaskStatus.COMPLETED, "result": last.result}
        elif last.status == RunStatus.CANCELLED:
            outcome = {"status": TaskStatus.CANCELLED}
        else:
            timed_out = last.error_type.endswith("TaskTimedOut")
            outcome = {
                "status": TaskStatus.TIMED_OUT if timed_out else TaskStatus.FAILED,
                "error_type": last.error_type,
                "error_message": last.error_message,
            }
        with transaction.atomic():
            record_outcome(task.id, **outcome)
        settled += 1
    if settled:
        runs_changed()
    return settled
