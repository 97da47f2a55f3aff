"""Delivering alerts: take the due AlertDelivery rows, send them, log how it went.

Runs in a worker (`hot.deliver_alerts`, rung when alerts are recorded; the sweeper rings again
while any is due), never inside a run's transaction. Per channel:

1. Take (one short transaction, the channel's AlertChannelLock row locked so that two
   deliverers never both spend its budget): the due rows, oldest first. A new failed or
   cancelled alert is taken while the channel has sent fewer than its rate limit in the last
   ALERT_RATE_WINDOW_SECONDS (counted by first_attempt_at); beyond that it is marked
   `suppressed` and counted in the channel's pending summary, which goes out when the window
   has room again. Retries, tests and summaries are not held back. A taken row is `sending`
   with a lease (next_attempt_at): if this deliverer dies it is due again.
2. Send, outside any transaction, with ALERT_TIMEOUT_SECONDS: a webhook is a JSON POST, an
   email goes through Django's mail.
3. Log: `sent`, or `pending` again after a backoff (ALERT_RETRY_DELAY_SECONDS, doubling), or
   `failed` after ALERT_MAX_ATTEMPTS attempts or a refusal no retry can fix (a 4xx other than
   408 and 429). A conditional UPDATE on (id, status='sending', attempts): a deliverer whose
   lease lapsed and whose row was taken again logs nothing over the newer attempt.

Delivery is at least once: a deliverer that dies after the receiver accepted but before the log
says so sends again. The `X-Hot-Delivery` header (the delivery id) lets a receiver drop repeats.
"""

import json
import logging
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.core.mail import get_connection, send_mail
from django.db import transaction
from django.db.models import F, Min
from django.db.models.functions import Coalesce
from django.utils import timezone

from hotapp.conf import hot_settings
from hotapp.ids import uuid7
from hotapp.models import (
    RATE_LIMITED_KINDS,
    UNDELIVERED_STATUSES,
    AlertChannelLock,
    AlertDelivery,
    AlertKind,
    DeliveryStatus,
)
from runtime import alerts
from runtime.alerts import Channel
from runtime.db import with_db_retry
from runtime.dispatch import send_on_commit

logger = logging.getLogger("hot.alerts")

# Rows one channel hands a deliverer at a time.
TAKE_BATCH = 20
# A deliverer works this long, then rings again and lets the worker take its next message.
DELIVER_SECONDS = 10.0
# A taken row's lease beyond the send's own timeout.
LEASE_MARGIN = timedelta(seconds=30)
# A summary lists this many of the alerts it counts (it counts them all).
SUMMARY_RUNS = 20
MAX_ERROR = 2000


class DeliveryFailed(Exception):
    """The receiver did not take the alert."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def deliver_due(now: datetime | None = None, seconds: float = DELIVER_SECONDS) -> int:
    """Send every due alert, until none is due or `seconds` have passed (then ring again);
    returns how many attempts were made. `now` fixes the clock (tests)."""
    configured = {channel.name: channel for channel in alerts.channels()}
    deadline = time.monotonic() + seconds
    attempted = 0
    while True:
        taken, held = with_db_retry(
            partial(take_due, configured, now or timezone.now()), "alert take"
        )
        if not taken and not held:
            return attempted
        for delivery in taken:
            attempt(delivery, configured[delivery.channel], now)
            attempted += 1
        if time.monotonic() > deadline:
            alerts.ring_on_commit()
            return attempted


def _due(now: datetime):
    return AlertDelivery.objects.filter(
        status__in=list(UNDELIVERED_STATUSES), next_attempt_at__lte=now
    )


def take_due(configured: dict[str, Channel], now: datetime) -> tuple[list[AlertDelivery], int]:
    """Step 1 for every channel with due rows: the rows taken for sending (see the module), and
    how many others were held back or given up (more may be due behind them)."""
    names = set(_due(now).order_by().values_list("channel", flat=True).distinct())
    taken: list[AlertDelivery] = []
    held = 0
    for name in sorted(names):
        channel = configured.get(name)
        with transaction.atomic():
            if channel is None:
                held += (
                    _due(now)
                    .filter(channel=name)
                    .update(
                        status=DeliveryStatus.FAILED,
                        last_error=f"The channel {name!r} is no longer configured",
                        next_attempt_at=None,
                        updated_at=now,
                    )
                )
                continue
            channel_taken, channel_held = _take_channel(channel, now)
            taken += channel_taken
            held += channel_held
    return taken, held


def _lock(name: str) -> None:
    if not AlertChannelLock.objects.select_for_update().filter(name=name).exists():
        AlertChannelLock.objects.bulk_create([AlertChannelLock(name=name)], ignore_conflicts=True)
        AlertChannelLock.objects.select_for_update().filter(name=name).exists()


def _take_channel(channel: Channel, now: datetime) -> tuple[list[AlertDelivery], int]:
    _lock(channel.name)
    rows = list(
        _due(now)
        .filter(channel=channel.name)
        .order_by("next_attempt_at", "created_at", "id")
        .select_for_update()[:TAKE_BATCH]
    )
    if not rows:
        return [], 0
    window_start = now - timedelta(seconds=hot_settings()["ALERT_RATE_WINDOW_SECONDS"])
    in_window = AlertDelivery.objects.filter(
        channel=channel.name,
        kind__in=list(RATE_LIMITED_KINDS),
        first_attempt_at__gte=window_start,
    )
    room = channel.rate_limit - in_window.count()
    take, hold = [], []
    for row in rows:
        if row.kind in RATE_LIMITED_KINDS and row.first_attempt_at is None:
            if room <= 0:
                hold.append(row)
                continue
            room -= 1
        take.append(row)
    if hold:
        _suppress(channel, hold, in_window, now)
    if not take:
        return [], len(hold)
    lease = now + timedelta(seconds=hot_settings()["ALERT_TIMEOUT_SECONDS"]) + LEASE_MARGIN
    AlertDelivery.objects.filter(id__in=[row.id for row in take]).update(
        status=DeliveryStatus.SENDING,
        attempts=F("attempts") + 1,
        first_attempt_at=Coalesce("first_attempt_at", now),
        next_attempt_at=lease,
        updated_at=now,
    )
    for row in take:
        row.status = DeliveryStatus.SENDING
        row.attempts += 1
        row.first_attempt_at = row.first_attempt_at or now
    return take, len(hold)


def _suppress(channel: Channel, held: list[AlertDelivery], in_window, now: datetime) -> None:
    """Hold back alerts past the channel's rate limit, counting them in its pending summary,
    due when the oldest alert of the window leaves it."""
    window = timedelta(seconds=hot_settings()["ALERT_RATE_WINDOW_SECONDS"])
    limit_text = f"{channel.rate_limit} per {window.total_seconds():g} s"
    AlertDelivery.objects.filter(id__in=[row.id for row in held]).update(
        status=DeliveryStatus.SUPPRESSED,
        last_error=f"Held back by the rate limit ({limit_text}); counted in a summary",
        next_attempt_at=None,
        updated_at=now,
    )
    summary = (
        AlertDelivery.objects.select_for_update()
        .filter(channel=channel.name, kind=AlertKind.SUMMARY, status=DeliveryStatus.PENDING)
        .first()
    )
    if summary is None:
        oldest = in_window.aggregate(oldest=Min("first_attempt_at"))["oldest"] or now
        summary = AlertDelivery(
            channel=channel.name,
            kind=AlertKind.SUMMARY,
            chain_id=uuid7(),
            created_at=now,
            next_attempt_at=max(oldest + window, now),
            payload={"kind": "summary", "channel": channel.name, "count": 0, "runs": []},
        )
        summary.payload["delivery_id"] = str(summary.id)
    payload = summary.payload
    payload["count"] += len(held)
    for row in held:
        if len(payload["runs"]) < SUMMARY_RUNS:
            run = row.payload.get("run") or {}
            payload["runs"].append(
                {
                    "kind": row.kind,
                    "id": run.get("id"),
                    "function": row.function,
                    "url": run.get("url"),
                }
            )
    payload["text"] = (
        f"{payload['count']} more alerts to channel {channel.name} were held back by its rate "
        f"limit ({limit_text}); see the alerts page"
    )
    payload["url"] = alerts.dashboard_url("hot:alerts")
    summary.updated_at = now
    summary.save()
    logger.warning(
        "held back %d alerts to %s by its rate limit",
        len(held),
        channel.name,
        extra={"action": "alerts_suppressed", "channel": channel.name},
    )


def attempt(delivery: AlertDelivery, channel: Channel, now: datetime | None = None) -> None:
    """Steps 2 and 3 for one taken row."""
    error: DeliveryFailed | None = None
    status: int | None = None
    try:
        status = send(delivery, channel)
    except DeliveryFailed as exc:
        error = exc
    except Exception as exc:  # a mail backend's own error, a bad header value, …
        error = DeliveryFailed(f"{type(exc).__name__}: {exc}")
    finished = now or timezone.now()
    fields: dict[str, Any] = {"updated_at": finished, "response_status": status}
    if error is None:
        fields.update(status=DeliveryStatus.SENT, sent_at=finished, next_attempt_at=None)
        fields["last_error"] = ""
    else:
        fields.update(response_status=error.status, last_error=str(error)[:MAX_ERROR])
        settings = hot_settings()
        if error.retryable and delivery.attempts < settings["ALERT_MAX_ATTEMPTS"]:
            wait = retry_delay(delivery.attempts)
            fields.update(status=DeliveryStatus.PENDING, next_attempt_at=finished + wait)
        else:
            fields.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
    logged = AlertDelivery.objects.filter(
        id=delivery.id, status=DeliveryStatus.SENDING, attempts=delivery.attempts
    ).update(**fields)
    extra = {"action": "alert_delivery", "channel": channel.name, "delivery_id": str(delivery.id)}
    if error is not None:
        logger.warning("alert %s to %s: %s", delivery.kind, channel.name, error, extra=extra)
        if logged and fields["status"] == DeliveryStatus.PENDING:
            _ring_later(fields["next_attempt_at"] - finished)


def retry_delay(attempts: int) -> timedelta:
    """The wait after attempt `attempts` failed: ALERT_RETRY_DELAY_SECONDS, doubling, at most
    an hour."""
    first = hot_settings()["ALERT_RETRY_DELAY_SECONDS"]
    return timedelta(seconds=min(first * 2 ** (attempts - 1), 3600))


def _ring_later(wait: timedelta) -> None:
    send_on_commit(
        "hot.deliver_alerts",
        (),
        "could not schedule an alert's retry; the sweeper will ring for it",
        {"action": "alert_retry_ring_failed"},
        countdown=max(wait.total_seconds(), 0),
        queue=hot_settings()["ALERT_QUEUE"],
    )


def send(delivery: AlertDelivery, channel: Channel) -> int | None:
    """Send one alert; returns the webhook's HTTP status (None for a mail). Raises
    DeliveryFailed."""
    if channel.webhook:
        return post_webhook(channel, delivery.payload, str(delivery.id))
    send_email(channel, delivery.payload)
    return None


def post_webhook(channel: Channel, payload: dict, delivery_id: str) -> int:
    body = json.dumps(payload, ensure_ascii=False).encode()
    request = urllib.request.Request(channel.webhook, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "hot-alerts")
    request.add_header("X-Hot-Delivery", delivery_id)
    for name, value in channel.headers:
        request.add_header(name, value)
    timeout = hot_settings()["ALERT_TIMEOUT_SECONDS"]
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
            return response.status
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace").strip()
        # A refusal that a retry cannot fix: the receiver says the request itself is wrong.
        retryable = exc.code >= 500 or exc.code in (408, 429)
        message = f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
        raise DeliveryFailed(message, exc.code, retryable) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryFailed(f"{type(exc).__name__}: {reason}") from None


def send_email(channel: Channel, payload: dict) -> None:
    subject, body = email_text(payload)
    connection = get_connection(timeout=hot_settings()["ALERT_TIMEOUT_SECONDS"])
    send_mail(
        subject,
        body,
        hot_settings()["ALERT_FROM_EMAIL"],  # None: settings.DEFAULT_FROM_EMAIL
        list(channel.email),
        connection=connection,
    )


def email_text(payload: dict) -> tuple[str, str]:
    """A mail's subject and plain-text body for an alert's payload."""
    kind = payload.get("kind", "")
    run = payload.get("run")
    if run:
        subject = f"[Hot] {kind}: {run['function']} (attempt {run['attempt']})"
        lines = [
            payload["text"],
            "",
            f"Function:  {run['function']}",
            f"Status:    {run['status']} (attempt {run['attempt']})",
            f"Run:       {run['id']}",
        ]
        if run.get("event_type"):
            lines.append(f"Event:     {run['event_type']}")
        if run.get("finished_at"):
            lines.append(f"Finished:  {run['finished_at']}")
        if run.get("url"):
            lines.append(f"Open:      {run['url']}")
        if run.get("error_type"):
            lines += ["", f"{run['error_type']}: {run['error_message']}"]
    else:
        subject = f"[Hot] {payload.get('text', kind)}"[:200]
        lines = [payload.get("text", "")]
        for item in payload.get("runs", []):
            lines.append(f"- {item['kind']}: {item['function']} {item.get('url') or item['id']}")
        if payload.get("url"):
            lines += ["", f"Alerts: {payload['url']}"]
    return subject, "\n".join(lines) + "\n"
