"""Bulk operations: one retry or cancel over every run a filter selects."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from hotapp.ids import uuid7
from hotapp.models.access import Via


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
