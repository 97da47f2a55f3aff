"""Events, runs and their traces: what every handler call leaves behind."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from hotapp.ids import uuid7
from hotapp.querysets import EventQuerySet, RunQuerySet


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


class WaitReason(models.TextChoices):
    """Why a queued run is held back instead of being claimed (shown beside its status)."""

    DELAY = "delay"  #: its event was sent with a delay; it is due at available_at
    CONCURRENCY = "concurrency"  #: its handler's concurrency limit (for its key) is reached
    RATE_LIMIT = "rate_limit"  #: its handler's rate limit (for its key) is spent until available_at
    DEBOUNCE = "debounce"  #: a later event for its key may still replace it until available_at
    SLEEP = "sleep"  #: a task sleeping durably (ctx.sleep) until available_at
    EVENT = "event"  #: a task waiting for an event (ctx.wait_for_event), until available_at at most


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
    # Sent with a delay (send(..., delay= | at=)): when its runs are due. Null: at once.
    deliver_at = models.DateTimeField(null=True, blank=True)

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
    # A queued run that is held back: not claimed before this time, when the scheduler
    # releases it (runtime.holds) and rings its doorbell. Null: claimable now.
    available_at = models.DateTimeField(null=True, blank=True)
    # Why it is held (WaitReason), or "". db_default: rows inserted in SQL (bench/) get it.
    wait_reason = models.CharField(
        max_length=16, choices=WaitReason.choices, blank=True, default="", db_default=""
    )

    # Queue order is priority (higher first), then age: the handler's priority option, evaluated
    # for the run's event (runtime.flow). db_default: rows inserted in SQL (bench/) get it.
    priority = models.SmallIntegerField(default=0, db_default=0)
    # Flow control (runtime.flow): null for a handler without a concurrency limit, rate limit or
    # debounce, whose runs the fast path claims (run_ready_idx); otherwise the value of its key
    # for this run's event ('' without a key), which its limits count by (runtime.flow_claim).
    flow_key = models.TextField(null=True, blank=True)

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
            # Workers' claim (executor.claim_batch): the first queued runs that are not held
            # and not flow-controlled, WHERE status = 'queued' AND available_at IS NULL AND
            # flow_key IS NULL ORDER BY priority DESC, created_at, id. Only the claimable rows:
            # held runs (a week of delayed events) are never walked past.
            models.Index(
                fields=["-priority", "created_at", "id"],
                condition=Q(status="queued", available_at__isnull=True, flow_key__isnull=True),
                name="run_ready_idx",
            ),
            # Flow-controlled claim (runtime.flow_claim), per function: WHERE function = %s AND
            # status = 'queued' AND available_at IS NULL AND flow_key IS NOT NULL ORDER BY
            # priority DESC, created_at, id LIMIT n.
            models.Index(
                fields=["function", "-priority", "created_at", "id"],
                condition=Q(status="queued", available_at__isnull=True, flow_key__isnull=False),
                name="run_flow_ready_idx",
            ),
            # A key's held runs (runtime.flow_claim): the next ones a finished run lets go
            # (wait_reason = 'concurrency'), and the one a later event debounces away
            # (wait_reason = 'debounce'): WHERE function = %s AND flow_key = %s AND status =
            # 'queued' ORDER BY priority DESC, created_at, id.
            models.Index(
                fields=["function", "flow_key", "-priority", "created_at", "id"],
                condition=Q(status="queued", flow_key__isnull=False),
                name="run_flow_queued_idx",
            ),
            # The concurrency limit: runs running per key (runtime.flow_claim), WHERE function
            # = %s AND flow_key = k AND status = 'running'.
            models.Index(
                fields=["function", "flow_key"],
                condition=Q(status="running", flow_key__isnull=False),
                name="run_flow_running_idx",
            ),
            # The rate limit: runs started per key in the window (runtime.flow_claim), WHERE
            # function = %s AND flow_key = k AND started_at > now - window.
            models.Index(
                fields=["function", "flow_key", "started_at"],
                condition=Q(flow_key__isnull=False, started_at__isnull=False),
                name="run_flow_started_idx",
            ),
            # The scheduler's release of held runs that are due (runtime.holds.release_due):
            # WHERE status = 'queued' AND available_at <= now ORDER BY available_at.
            models.Index(
                fields=["available_at"],
                condition=Q(status="queued", available_at__isnull=False),
                name="run_held_idx",
            ),
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
