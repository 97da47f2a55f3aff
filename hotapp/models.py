"""Hot's data model: events, runs and what they carry.

The database is the source of truth. Every state change of a run is a conditional UPDATE made by
the runtime (runtime/); this module only describes the rows and the queries over them.
"""

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hotapp.ids import uuid7
from hotapp.querysets import EventQuerySet, RunQuerySet, TaskQuerySet


class Trigger(models.TextChoices):
    EVENT = "event"  #: an event this run's handler subscribes to
    SCHEDULE = "schedule"  #: a schedule tick
    MANUAL = "manual"  #: started by a person (rerun) or a script
    TASK = "task"  #: an attempt of a long-running task


class RunStatus(models.TextChoices):
    QUEUED = "queued"  #: waiting for a worker to claim it
    RUNNING = "running"  #: claimed by a worker, which holds its lease
    SUCCEEDED = "succeeded"  #: the handler returned; its result and sent events are committed
    FAILED = "failed"  #: the handler raised; no retry is pending (is_superseded: one was made)
    CANCELLED = "cancelled"  #: stopped by a person before it finished
    PENDING_RETRY = "pending_retry"  #: failed; a new attempt is due at next_retry_at


TERMINAL_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
ACTIVE_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PENDING_RETRY})


class Event(models.Model):
    """A message of some type, persisted before send() returns."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    type = models.CharField(max_length=200)
    data = models.JSONField(default=dict)
    # The run whose success committed this event; null when sent from outside any run.
    source_run = models.ForeignKey(
        "Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="sent_events"
    )
    # One workflow instance: a new stream per event sent from outside a run, inherited inside.
    stream_id = models.UUIDField()
    created_at = models.DateTimeField()
    # Whether any handler subscribed to this type when it was sent (False: stored, unhandled).
    is_handled = models.BooleanField(default=False)

    objects = EventQuerySet.as_manager()

    class Meta:
        # Django also indexes the foreign key source_run_id (hotapp_event_source_run_id_…): a
        # run page's lineage, the events the run sent (run.sent_events), and SET NULL when a
        # run is deleted.
        indexes = [
            # Newest-first event list, paginated by (created_at, id).
            models.Index(fields=["-created_at", "-id"], name="event_created_idx"),
            # Everything of one workflow: the lineage graph reads events and runs by stream.
            models.Index(fields=["stream_id"], name="event_stream_idx"),
            # Events list filtered by type.
            models.Index(fields=["type", "-created_at"], name="event_type_idx"),
            # Events list filtered to the unhandled ones (rare), newest first.
            models.Index(
                fields=["-created_at", "-id"],
                condition=Q(is_handled=False),
                name="event_unhandled_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class Run(models.Model):
    """One call of a handler: its input, outcome, timing and lineage."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # The handler's registered name (module.qualname).
    function = models.CharField(max_length=300)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    event = models.ForeignKey(
        Event, null=True, blank=True, on_delete=models.CASCADE, related_name="runs"
    )
    # Copied from the event so lists filter and label by type without a join.
    event_type = models.CharField(max_length=200, blank=True, default="")
    # An attempt of a long-running task (trigger=task).
    task = models.ForeignKey(
        "Task", null=True, blank=True, on_delete=models.CASCADE, related_name="runs"
    )
    # A schedule's tick (trigger=schedule): which schedule, and the tick it fired for.
    schedule = models.ForeignKey(
        "Schedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    scheduled_at = models.DateTimeField(null=True, blank=True)
    stream_id = models.UUIDField()
    input = models.JSONField(default=dict)

    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    # 1 for the first attempt; a retry is origin's attempt count plus one.
    attempt = models.PositiveSmallIntegerField(default=1)
    # The first attempt of this run's retry chain; null on a first attempt.
    origin_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="retries"
    )
    # A later attempt of this run's chain exists: this failed attempt was retried, automatically
    # or by hand, and the chain's outcome is its latest attempt's. Set in the transaction that
    # inserts that attempt (runtime.retry_attempts). A failed attempt that is not superseded ends
    # its chain failed: it "needs attention". db_default: rows inserted in SQL (bench/) get it.
    is_superseded = models.BooleanField(default=False, db_default=False)
    # The run this one repeats by a manual rerun (fresh stream, no retry link).
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns"
    )
    # The retry policy in force when the run was created (runtime.retry_policy.Retry.as_dict()).
    retry_policy = models.JSONField(default=dict)

    result = models.JSONField(null=True, blank=True)
    error_type = models.CharField(max_length=300, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    error_traceback = models.TextField(blank=True, default="")

    created_at = models.DateTimeField()
    # Stamped by every state change (runtime.transitions); dashboards follow changes by it.
    updated_at = models.DateTimeField(default=timezone.now)
    # When the run last became queued and its doorbell was rung; the sweeper re-rings old ones.
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)

    # Crash recovery: the claiming worker's token and the time its claim lapses unless renewed.
    claimed_by = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # How many times this run was re-queued because its worker died.
    recovery_count = models.PositiveSmallIntegerField(default=0)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        permissions = [("operate_run", "Can retry, rerun and cancel runs")]
        constraints = [
            # One row per attempt of a chain: a double-clicked Retry, or a promotion racing the
            # sweeper, cannot create two "attempt 3"s.
            models.UniqueConstraint(
                fields=["origin_run", "attempt"],
                condition=Q(origin_run__isnull=False),
                name="run_one_row_per_attempt",
            ),
            # Exactly one run per schedule tick, however many schedulers run at once: a second
            # scheduler's INSERT of the same tick conflicts and is skipped.
            models.UniqueConstraint(
                fields=["schedule", "scheduled_at"],
                condition=Q(trigger="schedule", origin_run__isnull=True, rerun_of__isnull=True),
                name="run_one_per_schedule_tick",
            ),
            # Only a failed attempt is retried, and a superseded one never changes again: so
            # is_superseded = false holds for every other status, and "needs attention" is
            # status = 'failed' AND NOT is_superseded (RunQuerySet.filtered relies on it).
            models.CheckConstraint(
                condition=Q(is_superseded=False) | Q(status="failed"),
                name="run_superseded_only_if_failed",
            ),
        ]
        # Django also indexes each foreign key (hotapp_run_<column>_…), which serve:
        # - event_id: an event's page and the events list (the runs an event triggered), a run
        #   page's trigger, and the CASCADE when an event is deleted;
        # - task_id: a task page's attempts and its live updates (runs WHERE task_id = %s), and
        #   the sweeper's settle_orphans (a task's active runs, NOT EXISTS);
        # - schedule_id: SET NULL when a schedule row is deleted;
        # - origin_run_id: a run page's attempts (origin_run_id = %s; run_one_row_per_attempt
        #   covers it too) and the CASCADE from a first attempt;
        # - rerun_of_id: SET NULL when the run a rerun repeats is deleted.
        indexes = [
            # Newest-first run list, paginated by (created_at, id).
            models.Index(fields=["-created_at", "-id"], name="run_created_idx"),
            # Run list filtered by status, function or event type, newest first.
            models.Index(fields=["status", "-created_at", "-id"], name="run_status_idx"),
            # Chains that need attention, newest first: the runs list's (and API's) status=failed
            # and the overview's recent failures: WHERE status = 'failed' AND NOT is_superseded
            # ORDER BY created_at DESC, id DESC LIMIT 51. Only those rows: few, however many
            # attempts were retried. (Every failed attempt, ?status=failed_attempt, reads
            # run_status_idx.)
            models.Index(
                fields=["-created_at", "-id"],
                condition=Q(status="failed", is_superseded=False),
                name="run_attention_idx",
            ),
            models.Index(fields=["function", "-created_at", "-id"], name="run_function_idx"),
            models.Index(fields=["event_type", "-created_at", "-id"], name="run_event_type_idx"),
            # Run list filtered by trigger (?trigger=schedule), newest first:
            # WHERE trigger = %s ORDER BY created_at DESC, id DESC LIMIT 51.
            models.Index(fields=["trigger", "-created_at", "-id"], name="run_trigger_idx"),
            # The whole workflow of one stream (lineage graph, workflow view).
            models.Index(fields=["stream_id"], name="run_stream_idx"),
            # Live updates: runs changed since a dashboard's cursor.
            models.Index(fields=["updated_at"], name="run_updated_idx"),
            # Sweeper: queued runs whose doorbell may be lost, oldest first.
            models.Index(fields=["queued_at"], condition=Q(status="queued"), name="run_queued_idx"),
            # Sweeper and retry promotion: pending retries that are due.
            models.Index(
                fields=["next_retry_at"],
                condition=Q(status="pending_retry"),
                name="run_retry_due_idx",
            ),
            # Sweeper: running runs whose lease lapsed (their worker died).
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="running"),
                name="run_lease_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.function} {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def needs_attention(self) -> bool:
        """The latest attempt of its chain failed and no retry is pending."""
        return self.status == RunStatus.FAILED and not self.is_superseded

    @property
    def retry_number(self) -> int:
        """0 for a first attempt, n for the n-th retry (the ↻n badge)."""
        return self.attempt - 1

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds() * 1000


class RunTrace(models.Model):
    """A run's execution trace: one document per run, written with the run's outcome."""

    run = models.OneToOneField(
        Run, primary_key=True, on_delete=models.CASCADE, related_name="trace"
    )
    # {"format": 1, "spans": [{id, parent, name, module, file, line, start_us, duration_us,
    #  args, result | error, values?, kind?, yields?, incomplete?}], "span_count",
    #  "dropped_spans", "is_truncated", "limits"}; see runtime/trace_recorder.py.
    data = models.JSONField()
    span_count = models.PositiveIntegerField(default=0)
    is_truncated = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"trace of {self.run_id} ({self.span_count} spans)"

    def tree(self) -> list[dict]:
        """The spans as nested dicts (each with "children"), roots first, in call order."""
        spans = [dict(span, children=[]) for span in self.data.get("spans", [])]
        roots: list[dict] = []
        for span in spans:
            parent = span.get("parent")
            (spans[parent]["children"] if parent is not None else roots).append(span)
        return roots


class TaskStatus(models.TextChoices):
    QUEUED = "queued"  #: started, waiting for a worker
    RUNNING = "running"  #: an attempt is running, or a retry is due
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
            # Live updates of the tasks list: tasks changed since a page's cursor.
            models.Index(fields=["updated_at"], name="task_updated_idx"),
            # Sweeper: running tasks past their deadline.
            models.Index(
                fields=["deadline_at"], condition=Q(status="running"), name="task_deadline_idx"
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


class Schedule(models.Model):
    """A handler that fires on a cron schedule; declared in code, its state kept here."""

    name = models.CharField(max_length=300, unique=True)  #: the handler's registered name
    expression = models.CharField(max_length=200)
    is_paused = models.BooleanField(default=False)
    # How many missed ticks to run after downtime (0: only the latest due one).
    backfill = models.PositiveIntegerField(default=0)
    # The newest tick a run was created for; the scheduler fires ticks after it.
    last_tick_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} ({self.expression})"


class ApiToken(models.Model):
    """A secret that lets a script call the JSON API as its user (`Authorization: Bearer …`).

    Only the secret's SHA-256 is stored: a copy of the database does not hand out working
    tokens. (A slow password hash is not needed: the secret is 256 random bits, not a guessable
    word.) The prefix stays visible so a person can tell their tokens apart.
    """

    PREFIX_CHARS = 12  # "hot_" and 8 characters of the secret

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="hot_api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=PREFIX_CHARS)
    # Unique: its index serves the lookup of every API request (WHERE secret_hash = %s).
    secret_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    # Django also indexes the foreign key user_id: the tokens page (a user's own tokens) and the
    # CASCADE when a user is deleted.

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    @classmethod
    def issue(cls, user, name: str) -> tuple["ApiToken", str]:
        """A new token for `user` and its secret, which is shown once and never stored."""
        secret = "hot_" + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, prefix=secret[: cls.PREFIX_CHARS], secret_hash=cls.hash(secret)
        )
        return token, secret

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class Via(models.TextChoices):
    PAGE = "page", "dashboard"  #: a button on a Hot App page
    API = "api", "API"  #: the JSON API
    CLI = "cli", "CLI"  #: `manage.py hot …`
    CODE = "code", "code"  #: a program calling the runtime (runtime.retry_run(…))


class AuditAction(models.TextChoices):
    # The labels read as the start of the sentence a page shows ("Retried by alice at …").
    RETRY = "retry", "Retried"
    RERUN = "rerun", "Rerun"
    CANCEL = "cancel", "Cancelled"
    TASK_CANCEL = "task_cancel", "Cancelled"
    TASK_SEND = "task_send", "Message sent"
    TASK_CLOSE = "task_close", "Inbox closed"
    SCHEDULE_PAUSE = "schedule_pause", "Paused"
    SCHEDULE_RESUME = "schedule_resume", "Resumed"


class AuditEntry(models.Model):
    """Who did what to a run, task or schedule, when and through what; written by the runtime
    in the same transaction as the action (runtime/audit.py)."""

    id = models.BigAutoField(primary_key=True)
    action = models.CharField(max_length=20, choices=AuditAction.choices)
    # What the action concerns: exactly one of these. Its history goes with it.
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_entries"
    )
    task = models.ForeignKey(
        Task, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_entries"
    )
    schedule = models.ForeignKey(
        Schedule, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_entries"
    )
    # The run the action made (a retry's attempt, a rerun), if any.
    result_run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Null for the CLI and for programs; the name stays when the user is deleted.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True, default="")
    via = models.CharField(max_length=8, choices=Via.choices)
    created_at = models.DateTimeField(default=timezone.now)

    # Django indexes every foreign key, which serve: run_id and result_run_id a run page's
    # history (WHERE run_id = %s OR result_run_id = %s), task_id a task page's, schedule_id the
    # schedules page's last change, user_id SET NULL when a user is deleted; and the CASCADEs.

    class Meta:
        verbose_name_plural = "audit entries"

    @classmethod
    def of_run(cls, run_id) -> models.QuerySet["AuditEntry"]:
        """A run's history: what was done to it, and the action that made it, oldest first."""
        return cls.objects.filter(Q(run_id=run_id) | Q(result_run_id=run_id)).order_by("id")

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.username or '?'} via {self.via}"


class BulkKind(models.TextChoices):
    RETRY = "retry"  #: retry every failed run of the filter that was not retried already
    CANCEL = "cancel"  #: cancel every unfinished run of the filter


class BulkStatus(models.TextChoices):
    PENDING = "pending"  #: created; waiting for a worker (or the command) to take it
    RUNNING = "running"  #: a worker holds its lease and works through the runs in batches
    DONE = "done"  #: every matching run was handled (done, skipped or failed)
    FAILED = "failed"  #: stopped by an error before the end; last_error says which
    CANCELLED = "cancelled"  #: stopped on request; the batches done so far stay done


BULK_FINISHED_STATUSES = frozenset({BulkStatus.DONE, BulkStatus.FAILED, BulkStatus.CANCELLED})


class BulkOperation(models.Model):
    """Retry or cancel every run matching a runs-list filter, in batches (runtime/bulk.py)."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    kind = models.CharField(max_length=16, choices=BulkKind.choices)
    # The runs page's query parameters (hotapp.filters.run_filter_params), replayed through the
    # page's own form and queryset, so it matches what the page lists.
    filter = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept when the user is deleted; for the CLI, the shell's user.
    created_by_name = models.CharField(max_length=150, blank=True, default="")
    via = models.CharField(max_length=8, choices=Via.choices)
    status = models.CharField(max_length=16, choices=BulkStatus.choices, default=BulkStatus.PENDING)
    # Runs that matched and fitted when the operation was created (the confirmation's count).
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)  #: retried, cancelled or asked to stop
    skipped = models.PositiveIntegerField(default=0)  #: no longer fitted when their turn came
    failed = models.PositiveIntegerField(default=0)  #: the action raised an error
    last_error = models.TextField(blank=True, default="")
    # Runs created after the operation are not its business: retries it makes come after it.
    # Every row at or before created_at is visited once, newest first, from this keyset cursor.
    created_at = models.DateTimeField(default=timezone.now)
    cursor_created_at = models.DateTimeField(null=True, blank=True)
    cursor_id = models.UUIDField(null=True, blank=True)
    # Like a run's claim: the executor that works on it, and when others may take over.
    claimed_by = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # Django also indexes created_by_id: SET NULL when a user is deleted.
        indexes = [
            # The bulk operations page: the newest first.
            models.Index(fields=["-created_at", "-id"], name="bulk_created_idx"),
            # Sweeper: unfinished operations whose lease lapsed (a worker died, a doorbell was
            # lost): WHERE status IN ('pending', 'running') AND lease_expires_at < now.
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status__in=["pending", "running"]),
                name="bulk_unfinished_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"bulk {self.kind} {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in BULK_FINISHED_STATUSES

    @property
    def handled(self) -> int:
        return self.done + self.skipped + self.failed

    @property
    def percent(self) -> int:
        """How far along, 0–100, for a progress bar."""
        if self.is_finished and self.status == BulkStatus.DONE:
            return 100
        return min(100, self.handled * 100 // self.total) if self.total else 0
