"""Long-running tasks: each attempt is a Run; checkpoints and messages are kept."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from hotapp.ids import uuid7
from hotapp.models.runs import Run
from hotapp.querysets import TaskQuerySet


class TaskStatus(models.TextChoices):
    QUEUED = "queued"  #: started, waiting for a worker
    RUNNING = "running"  #: an attempt is running, or a retry is due
    WAITING = "waiting"  #: suspended in ctx.sleep() or ctx.wait_for_event(); no worker holds it
    COMPLETED = "completed"  #: the function returned; its result is stored
    FAILED = "failed"  #: the function raised and no retry is left
    TIMED_OUT = "timed_out"  #: it ran past its timeout
    CANCELLED = "cancelled"  #: stopped on request


TASK_TERMINAL_STATUSES = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED}
)


class Task(models.Model):
    """A long-running function with checkpoints and messages. Each attempt is a Run."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    name = models.CharField(max_length=300)  #: the registered task function
    input = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default="queued")
    result = models.JSONField(null=True, blank=True)
    error_type = models.CharField(max_length=300, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    stream_id = models.UUIDField()
    # The run that started it, if one did.
    parent_run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="started_tasks"
    )
    retry_policy = models.JSONField(default=dict)
    timeout_seconds = models.FloatField(null=True, blank=True)
    # Set when the first attempt starts: started_at + timeout.
    deadline_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # No more messages will come: receive() returns None once the inbox is empty.
    is_inbox_closed = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        # Django also indexes the foreign key parent_run_id: SET NULL when that run is deleted.
        indexes = [
            # Newest-first task list, paginated by (created_at, id).
            models.Index(fields=["-created_at", "-id"], name="task_created_idx"),
            # Retention (runtime/retention.py): one task name's tasks, oldest first,
            # WHERE name = %s AND created_at < cutoff AND (created_at, id) > cursor
            # ORDER BY created_at, id LIMIT batch; and its list of names, one probe each
            # (SELECT MIN(name) … WHERE name > previous).
            models.Index(fields=["name", "created_at", "id"], name="task_name_idx"),
            # Live updates of the tasks list: tasks changed since a page's cursor.
            models.Index(fields=["updated_at"], name="task_updated_idx"),
            # Sweeper: running or waiting tasks past their deadline (a task's timeout counts the
            # time it spends in durable waits).
            models.Index(
                fields=["deadline_at"],
                condition=Q(status__in=["running", "waiting"]),
                name="task_deadline_idx",
            ),
            # The sweeper's settle_orphans looks for unfinished tasks every pass:
            # WHERE NOT (status IN <terminal statuses>). Only those rows are in the index, few
            # however many tasks have finished. Sorted: a set's order differs between processes
            # and the migration must not.
            models.Index(
                fields=["status"],
                condition=~Q(status__in=sorted(TASK_TERMINAL_STATUSES)),
                name="task_unfinished_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"task {self.name} {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TASK_TERMINAL_STATUSES

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds() * 1000


class TaskCheckpoint(models.Model):
    """One saved state of a task; the history is kept, the newest one is restored."""

    id = models.BigAutoField(primary_key=True)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="checkpoints")
    run = models.ForeignKey(Run, null=True, on_delete=models.SET_NULL, related_name="+")
    state = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # Django also indexes the foreign keys task_id (checkpoint_task_idx would serve its
        # queries: CASCADE from the task) and run_id (SET NULL when the run is deleted).
        indexes = [
            # restore(): the newest checkpoint of a task; the task page's timeline.
            models.Index(fields=["task", "-id"], name="checkpoint_task_idx"),
        ]


class MessageDirection(models.TextChoices):
    IN = "in"  #: sent to the task (its inbox)
    OUT = "out"  #: sent by the task


class TaskMessage(models.Model):
    id = models.BigAutoField(primary_key=True)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=3, choices=MessageDirection.choices)
    body = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    # Inbox messages: when receive() handed it out, and to which attempt.
    consumed_at = models.DateTimeField(null=True, blank=True)
    consumed_by = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        # Django also indexes the foreign keys task_id (CASCADE from the task; message_task_idx
        # serves the pages) and consumed_by_id (SET NULL when that run is deleted).
        indexes = [
            # receive(): the oldest unconsumed message in a task's inbox.
            models.Index(
                fields=["task", "id"],
                condition=Q(direction="in", consumed_at__isnull=True),
                name="message_inbox_idx",
            ),
            # The task page: its newest messages in and out (read backwards), shown in order.
            models.Index(fields=["task", "id"], name="message_task_idx"),
        ]


class WaitKind(models.TextChoices):
    SLEEP = "sleep"  #: ctx.sleep(seconds)
    EVENT = "event"  #: ctx.wait_for_event(type, match=..., timeout=...)


class WaitOutcome(models.TextChoices):
    WOKE = "woke"  #: a sleep's time came
    MATCHED = "matched"  #: a matching event came (event_id)
    TIMED_OUT = "timed_out"  #: wait_for_event's timeout passed with no matching event
    ABANDONED = "abandoned"  #: the task ended (cancelled, timed out, failed) while it waited


class TaskWait(models.Model):
    """One durable wait of a task (runtime/waits.py). A task's function runs again from the top
    each time it resumes; its n-th wait call finds the n-th row here (`key` "#n", or the key the
    code gave) and, once resolved, returns at once with what it resolved to."""

    id = models.BigAutoField(primary_key=True)
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="waits")
    # "#1", "#2", … by the order of the wait calls, or a key the task's code chose.
    key = models.CharField(max_length=200)
    kind = models.CharField(max_length=8, choices=WaitKind.choices)
    # The attempt (run) that began the wait.
    run = models.ForeignKey(Run, null=True, on_delete=models.SET_NULL, related_name="+")
    # A sleep: when it ends. An event wait: its timeout (null: none).
    until = models.DateTimeField(null=True, blank=True)
    event_type = models.CharField(max_length=200, blank=True, default="")
    # The event's data must contain this (JSON containment, like PostgreSQL's @>).
    match = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Set once, by one conditional UPDATE (… WHERE resolved_at IS NULL): whoever sets it decides
    # the outcome, so a matching event and a timeout arriving together cannot both win.
    resolved_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=12, choices=WaitOutcome.choices, blank=True, default="")
    event = models.ForeignKey(
        "Event", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        # Django also indexes the foreign keys task_id (task_wait_key_unique serves its queries),
        # run_id and event_id (SET NULL when the run or event is deleted).
        constraints = [
            # A replayed wait call finds its row: WHERE task_id = %s AND key = %s.
            models.UniqueConstraint(fields=["task", "key"], name="task_wait_key_unique"),
        ]
        indexes = [
            # The scheduler's matcher, every second: open event waits, oldest first
            # (WHERE kind = 'event' AND resolved_at IS NULL ORDER BY created_at). Only open
            # waits are in it, few however many have ended.
            models.Index(
                fields=["created_at"],
                condition=Q(kind="event", resolved_at__isnull=True),
                name="task_wait_open_event_idx",
            ),
        ]

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None
