"""Failure alerts: what raises one, and the outbox rows that carry it to a worker.

An alert is raised when a chain's last attempt fails (no retry pending) or a run is cancelled,
by whichever actor makes that change: a worker's completion, the sweeper (WorkerLost, forced
cancels, task timeouts), a person's cancel, a bulk cancel. Every such change goes through
runtime.transitions, which calls this module in the same transaction: the change and its
AlertDelivery rows commit together or not at all (an outbox). Nothing here touches the network;
runtime.alert_delivery sends them from a worker, rung on commit (`hot.deliver_alerts`), with
the sweeper ringing again for any that stay due.

Channels come from `HOT["ALERT_CHANNELS"]`, a list of dicts:

    {"name": "ops", "webhook": "https://…", "headers": {…}, "on": ["failed", "cancelled"],
     "functions": ["orders.*"], "rate_limit": 10}
    {"name": "oncall", "email": ["a@example.com"], "on": ["failed"]}

`on` defaults to both kinds, `functions` (shell-style patterns of handler names) to every
function, `rate_limit` to HOT["ALERT_RATE_LIMIT"] per HOT["ALERT_RATE_WINDOW_SECONDS"].
"""

import atexit
import fnmatch
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from hotapp.conf import hot_settings
from hotapp.ids import uuid7
from hotapp.models import (
    AlertDelivery,
    AlertKind,
    DeliveryStatus,
    Run,
    RunStatus,
)
from runtime.bell import Bell
from runtime.celery_app import celery_app

logger = logging.getLogger("hot.alerts")

# The run statuses that raise an alert, and the kind each raises.
ALERTING = {RunStatus.FAILED: AlertKind.FAILED, RunStatus.CANCELLED: AlertKind.CANCELLED}
KINDS = (AlertKind.FAILED, AlertKind.CANCELLED)
# An alert carries the start of the error, not all of it: the run's page has the rest.
MAX_ERROR_CHARS = 2000
# The columns an alert is made from (the sweeper's and a person's changes read them back).
RUN_FIELDS = (
    "id",
    "function",
    "trigger",
    "status",
    "attempt",
    "origin_run_id",
    "event_type",
    "task_id",
    "error_type",
    "error_message",
    "finished_at",
    "stream_id",
)


@dataclass(frozen=True)
class Channel:
    """One configured destination of alerts."""

    name: str
    webhook: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    email: tuple[str, ...] = ()
    on: frozenset[str] = frozenset(KINDS)
    functions: tuple[str, ...] = ()  #: shell-style patterns; empty: every function
    rate_limit: int = 10  #: alerts per window; more are held back and counted in a summary

    @property
    def transport(self) -> str:
        return "webhook" if self.webhook else "email"

    def wants(self, kind: str, function: str) -> bool:
        if kind not in self.on:
            return False
        return not self.functions or any(
            fnmatch.fnmatchcase(function, pattern) for pattern in self.functions
        )


def parse_channels(raw: Any) -> tuple[list[Channel], list[str]]:
    """The valid channels of an ALERT_CHANNELS value, and a message for each invalid one.

    Invalid entries are left out rather than raised: a typo in the alert settings must never
    make a run's completion fail. The system check (hotapp.apps) reports them at start-up.
    """
    if not raw:
        return [], []
    if not isinstance(raw, list | tuple):
        return [], ["ALERT_CHANNELS must be a list of channel dicts"]
    channels: list[Channel] = []
    errors: list[str] = []
    names: set[str] = set()
    for i, entry in enumerate(raw):
        try:
            channel = _channel(entry)
        except ValueError as exc:
            errors.append(f"ALERT_CHANNELS[{i}]: {exc}")
            continue
        if channel.name in names:
            errors.append(f"ALERT_CHANNELS[{i}]: the name {channel.name!r} is used twice")
            continue
        names.add(channel.name)
        channels.append(channel)
    return channels, errors


def _channel(entry: Any) -> Channel:
    if not isinstance(entry, Mapping):
        raise ValueError("each channel is a dict")
    unknown = set(entry) - {"name", "webhook", "headers", "email", "on", "functions", "rate_limit"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise ValueError("'name' is a non-empty string of at most 100 characters")
    webhook, email = entry.get("webhook") or "", entry.get("email") or ()
    if isinstance(email, str):
        email = (email,)
    if bool(webhook) == bool(email):
        raise ValueError(f"channel {name!r} needs either 'webhook' (a URL) or 'email' (addresses)")
    if webhook and not (isinstance(webhook, str) and webhook.startswith(("http://", "https://"))):
        raise ValueError(f"channel {name!r}: 'webhook' must be an http:// or https:// URL")
    if not all(isinstance(address, str) and "@" in address for address in email):
        raise ValueError(f"channel {name!r}: 'email' must be a list of addresses")
    headers = entry.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValueError(f"channel {name!r}: 'headers' must map strings to strings")
    on = entry.get("on", list(KINDS))
    if isinstance(on, str):
        on = [on]
    if not on or not set(on) <= set(KINDS):
        raise ValueError(f"channel {name!r}: 'on' takes {', '.join(KINDS)}")
    functions = entry.get("functions") or ()
    if isinstance(functions, str):
        functions = (functions,)
    if not all(isinstance(pattern, str) for pattern in functions):
        raise ValueError(f"channel {name!r}: 'functions' must be a list of names or patterns")
    rate_limit = entry.get("rate_limit", hot_settings()["ALERT_RATE_LIMIT"])
    if not isinstance(rate_limit, int) or isinstance(rate_limit, bool) or rate_limit < 1:
        raise ValueError(f"channel {name!r}: 'rate_limit' must be a whole number, at least 1")
    return Channel(
        name=name,
        webhook=webhook,
        headers=tuple(headers.items()),
        email=tuple(email),
        on=frozenset(str(kind) for kind in on),
        functions=tuple(functions),
        rate_limit=rate_limit,
    )


def channels() -> list[Channel]:
    """The configured channels (invalid entries left out and logged)."""
    valid, errors = parse_channels(hot_settings()["ALERT_CHANNELS"])
    for error in errors:
        logger.error("ignoring an alert channel: %s", error, extra={"action": "alert_config"})
    return valid


def channel_named(name: str) -> Channel | None:
    return next((channel for channel in channels() if channel.name == name), None)


# -- Recording: inside the transaction of the change that raises the alert ------------------


def recording(fields: Mapping[str, Any]) -> AbstractContextManager:
    """The transaction a transition with these fields needs: one of its own (savepoint-free,
    so nothing is added inside a caller's) when it may raise alerts, so that their rows commit
    with it; nothing otherwise."""
    if _may_alert(fields) and hot_settings()["ALERT_CHANNELS"]:
        return transaction.atomic(savepoint=False)
    return nullcontext()


def _may_alert(fields: Mapping[str, Any]) -> bool:
    # A promotion ends a pending retry as failed *and superseded*: its next attempt goes on.
    return fields.get("status") in ALERTING and not fields.get("is_superseded")


def record_transition(now: datetime, fields: Mapping[str, Any]) -> None:
    """Raise the alerts of a conditional UPDATE (runtime.transitions.transition) that just set
    `fields`, stamped `now`, in the caller's transaction.

    The UPDATE does not say which rows it changed; they carry its stamp (updated_at = now,
    run_updated_idx), and matching the stamp and the new state finds them. A row some other
    actor ended at the very same microsecond would be found too: it deserves the same alert,
    and the unique constraint makes recording it twice a no-op.
    """
    if not _may_alert(fields):
        return
    configured = channels()
    if not configured:
        return
    ended = Run.objects.filter(updated_at=now, status=fields["status"], is_superseded=False)
    _insert(list(ended.only(*RUN_FIELDS)), configured)


def record_claimed(runs: Sequence[Run], changed: set) -> None:
    """Raise the alerts of a worker's committed outcomes (runtime.transitions.write_claimed),
    from the rows in hand: no query unless one of them ended failed or cancelled.

    A worker's failed outcome never has a retry pending (that is pending_retry) and is no
    one's predecessor yet, so it ends its chain.
    """
    ending = [run for run in runs if run.status in ALERTING and run.id in changed]
    if ending:
        configured = channels()
        if configured:
            _insert(ending, configured)


def _insert(runs: Iterable[Run], configured: list[Channel]) -> None:
    now = timezone.now()
    rows = [
        _delivery(channel, kind, run, now)
        for run in runs
        for kind in [ALERTING[run.status]]
        for channel in configured
        if channel.wants(kind, run.function)
    ]
    if rows:
        # ON CONFLICT DO NOTHING on alert_one_per_chain_kind: the de-duplication. A conflict
        # does not abort the caller's transaction.
        AlertDelivery.objects.bulk_create(rows, ignore_conflicts=True)
        ring_on_commit()


def _delivery(channel: Channel, kind: str, run: Run, now: datetime) -> AlertDelivery:
    chain_id = run.origin_run_id or run.id
    delivery = AlertDelivery(
        channel=channel.name,
        kind=kind,
        run_id=run.id,
        chain_id=chain_id,
        function=run.function[:300],
        created_at=now,
        updated_at=now,
        next_attempt_at=now,
    )
    delivery.payload = run_payload(delivery, run)
    return delivery


def run_payload(delivery: AlertDelivery, run: Run) -> dict[str, Any]:
    """The webhook's JSON body for an alert about `run` (the mail is written from it too)."""
    error = f"{run.error_type}: {run.error_message}" if run.error_type else ""
    what = "failed" if delivery.kind == AlertKind.FAILED else "was cancelled"
    text = f"Run of {run.function} {what} (attempt {run.attempt})"
    return {
        "kind": str(delivery.kind),
        "channel": delivery.channel,
        "delivery_id": str(delivery.id),
        "text": f"{text}: {error[:300]}" if error else text,
        "run": {
            "id": str(run.id),
            "url": run_url(run.id),
            "function": run.function,
            "status": str(run.status),
            "attempt": run.attempt,
            "chain_id": str(delivery.chain_id),
            "trigger": str(run.trigger),
            "event_type": run.event_type,
            "task_id": str(run.task_id) if run.task_id else None,
            "stream_id": str(run.stream_id),
            "error_type": run.error_type,
            "error_message": run.error_message[:MAX_ERROR_CHARS],
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        },
    }


def dashboard_url(name: str, *args: Any) -> str | None:
    """A dashboard URL for a message that leaves the site: HOT["ALERT_BASE_URL"] (scheme and
    host, e.g. https://hot.example.com) before the path; the path alone without it."""
    try:
        path = reverse(name, args=args)
    except NoReverseMatch:
        return None  # the dashboard is not mounted in this project
    return hot_settings()["ALERT_BASE_URL"].rstrip("/") + path


def run_url(run_id: uuid.UUID) -> str | None:
    return dashboard_url("hot:run-detail", run_id)


def send_test(channel_name: str, requested_by: str = "") -> AlertDelivery:
    """Queue a test alert to a channel (the alerts page's button); delivered like any other,
    but never held back by the rate limit."""
    channel = channel_named(channel_name)
    if channel is None:
        raise LookupError(f"No alert channel is named {channel_name!r}")
    now = timezone.now()
    delivery = AlertDelivery(
        channel=channel.name,
        kind=AlertKind.TEST,
        chain_id=uuid7(),
        created_at=now,
        updated_at=now,
        next_attempt_at=now,
    )
    by = f" by {requested_by}" if requested_by else ""
    delivery.payload = {
        "kind": str(AlertKind.TEST),
        "channel": channel.name,
        "delivery_id": str(delivery.id),
        "text": f"Test alert from Hot to channel {channel.name}{by}",
        "requested_by": requested_by,
        "url": dashboard_url("hot:alerts"),
    }
    with transaction.atomic():
        delivery.save(force_insert=True)
        ring_on_commit()
    return delivery


# -- The doorbell ------------------------------------------------------------------------------


def _publish(_items: list) -> None:
    celery_app().send_task("hot.deliver_alerts", queue=hot_settings()["ALERT_QUEUE"])


# Coalesced like the workers' doorbell: a burst of failures rings one deliverer, and the publish
# happens on the bell's thread, never in the worker's completion.
_bell = Bell("hot-alerts", _publish, 0.05)
atexit.register(_bell.flush)


def ring_on_commit() -> None:
    """Wake a deliverer once the current transaction commits. A lost ring is found again by
    the sweeper (ring_if_due)."""
    transaction.on_commit(_bell.ring)


def flush() -> None:
    """Publish a pending ring now (tests; a process about to exit)."""
    _bell.flush()


def ring_if_due(now: datetime) -> int:
    """The sweeper's step: ring if any delivery is due (a lost doorbell, a retry whose time
    came, a deliverer that died mid-send). One probe of alert_due_idx."""
    due = AlertDelivery.objects.filter(
        status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING], next_attempt_at__lte=now
    ).exists()
    if due:
        _bell.ring()
    return int(due)
