"""Failure alerts: one row per alert and channel, written with the state change that causes it.

The channels themselves live in settings (`HOT["ALERT_CHANNELS"]`, runtime/alerts.py); these rows
are the outbox a worker delivers from, and the delivery log the alerts page shows.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from hotapp.ids import uuid7


class AlertKind(models.TextChoices):
    FAILED = "failed"  #: a chain's last attempt failed and no retry is pending
    CANCELLED = "cancelled"  #: a run was cancelled (by a person, a bulk operation, or forced)
    TEST = "test"  #: the alerts page's "Send test alert"
    SUMMARY = "summary"  #: the alerts a channel's rate limit held back, counted in one message


# Kinds the rate limit counts and holds back; a test is a person's click, a summary the way out.
RATE_LIMITED_KINDS = frozenset({AlertKind.FAILED, AlertKind.CANCELLED})


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  #: waiting for a deliverer, due at next_attempt_at
    SENDING = "sending"  #: taken by a deliverer; due again at next_attempt_at if it died
    SENT = "sent"  #: the receiver accepted it (a 2xx answer, or the mail server took it)
    FAILED = "failed"  #: every attempt failed; last_error says why
    SUPPRESSED = "suppressed"  #: held back by the channel's rate limit; counted in a summary


UNDELIVERED_STATUSES = frozenset({DeliveryStatus.PENDING, DeliveryStatus.SENDING})


# Each delivery status shown with the run badge of the same meaning.
DELIVERY_BADGES = {
    DeliveryStatus.PENDING: "status-pending_retry",
    DeliveryStatus.SENDING: "status-running",
    DeliveryStatus.SENT: "status-succeeded",
    DeliveryStatus.FAILED: "status-failed",
    DeliveryStatus.SUPPRESSED: "status-cancelled",
}


class AlertDelivery(models.Model):
    """One alert to one channel: the outbox row and, once handled, its log entry."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    channel = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=AlertKind.choices)
    # The attempt whose end raised the alert. SET NULL: the log outlives the runs it is about
    # when they are purged; chain_id and payload keep what it said.
    run = models.ForeignKey(
        "Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="alert_deliveries"
    )
    # The de-duplication key: the chain's first attempt (a run's origin_run_id, or its own id).
    # A summary or a test gets a fresh id of its own.
    chain_id = models.UUIDField()
    function = models.CharField(max_length=300, blank=True, default="")
    # What is sent (the webhook's JSON body; the mail's subject and text are made from it).
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    response_status = models.PositiveIntegerField(null=True, blank=True)  #: the webhook's answer
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # When a deliverer first took it: the rate limit counts alerts by this moment.
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # Django also indexes run_id: SET NULL when a run is deleted.
        constraints = [
            # De-duplication: one alert per chain and kind on each channel, however many times
            # (and by however many actors) the triggering transition is recorded.
            models.UniqueConstraint(
                fields=["channel", "chain_id", "kind"], name="alert_one_per_chain_kind"
            ),
            # At most one summary waiting per channel: more held-back alerts join it.
            models.UniqueConstraint(
                fields=["channel"],
                condition=Q(kind="summary", status="pending"),
                name="alert_one_pending_summary",
            ),
        ]
        indexes = [
            # The alerts page's history, newest first, keyset on (created_at, id).
            models.Index(fields=["-created_at", "-id"], name="alert_created_idx"),
            # Deliverer and sweeper: WHERE status IN ('pending', 'sending') AND
            # next_attempt_at <= now, oldest due first.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "sending"]),
                name="alert_due_idx",
            ),
            # The rate limit: a channel's alerts first taken within the window
            # (channel = %s AND first_attempt_at >= now - window).
            models.Index(fields=["channel", "first_attempt_at"], name="alert_window_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} alert to {self.channel} ({self.status})"

    @property
    def badge(self) -> str:
        """The CSS class of the run status badge of the same meaning (the pages)."""
        return DELIVERY_BADGES.get(self.status, "")

    @property
    def is_undelivered(self) -> bool:
        return self.status in UNDELIVERED_STATUSES


class AlertChannelLock(models.Model):
    """A row per channel, locked (SELECT … FOR UPDATE) while a deliverer takes that channel's
    due alerts, so that two deliverers never both spend the same rate-limit budget."""

    name = models.CharField(max_length=100, primary_key=True)

    def __str__(self) -> str:
        return self.name
