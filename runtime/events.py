"""send(): persist an event and one queued run per subscribed handler."""

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from hotapp.conf import hot_settings
from hotapp.ids import uuid7
from hotapp.models import Event, Run, RunStatus, Trigger, WaitReason
from runtime import dispatch, flow, flow_claim
from runtime.context import PendingEvent, current_run
from runtime.db import insert_together
from runtime.holds import parse_delay
from runtime.live import runs_changed
from runtime.payloads import check_json, validate_event_type
from runtime.registry import handlers_for


def send(
    event_type: str,
    data: Any = None,
    *,
    delay: timedelta | float | None = None,
    at: datetime | None = None,
) -> uuid.UUID:
    """Send an event; returns its id.

    Outside a run the event and its runs are committed before this returns, or, inside the
    caller's `transaction.atomic()`, together with the caller's transaction. Inside a handler
    the event is held until the run succeeds and committed with its result: a failed attempt
    sends nothing. With `delay` (a timedelta or seconds) or `at` (an aware datetime) the event
    is stored at once and its runs are held until then (released within about a second by the
    scheduler); `cancel_event(id)` cancels them meanwhile. Raises `InvalidEventType`,
    `PayloadError` or (for a bad delay) `ValueError` with nothing written.
    """
    validate_event_type(event_type)
    deliver_at = parse_delay(delay, at)  # ValueError before anything is written
    if data is None:
        data = {}
    encoded = check_json(data, f"Payload of {event_type!r}")
    ctx = current_run()
    if ctx is not None:
        ctx.check_cancelled()
        # Held until the run commits: a copy of what was checked, so that the caller changing
        # its object meanwhile cannot change (or break) what is sent. The copy is what the
        # database will hold, which is also what the runs a worker keeps for itself get.
        pending = PendingEvent(uuid7(), event_type, json.loads(encoded), deliver_at)
        ctx.outbox.append(pending)
        return pending.id
    pending = PendingEvent(uuid7(), event_type, data, deliver_at)
    if _autocommit_on_postgresql():
        # In autocommit the event and its runs go in one statement, its own transaction: one
        # round trip instead of four (BEGIN, two INSERTs, COMMIT).
        persist_events([(pending, None, None)])
    else:
        with transaction.atomic():
            persist_events([(pending, None, None)])
    return pending.id


Sent = Iterable[tuple[PendingEvent, uuid.UUID | None, uuid.UUID | None]]


def persist_events(sent: Sent, *also: Sequence[Model], keep: int = 0, token: str = "") -> list[Run]:
    """Insert events, given as (event, the run that sent it, its stream), and their runs, with
    any `also` rows (the executor's traces) in the same statement on PostgreSQL; ring the
    workers' doorbell and the dashboards' once the transaction commits.

    The first `keep` new runs are inserted already claimed under `token` (a draining worker's
    claim, see executor.drain): that worker runs them next, so they need neither a doorbell
    nor a claim. They are returned.

    Must be called inside `transaction.atomic()`, or on PostgreSQL in autocommit, where the one
    statement is its own transaction. With no stream an event starts a new stream, identified by
    the event's own id.
    """
    events, runs = event_rows(sent)
    # A delayed event's runs are held, never kept; a flow-controlled run is claimed within its
    # limits (runtime.flow_claim), never kept either.
    kept = [run for run in runs if run.available_at is None and run.flow_key is None][:keep]
    if kept:
        now = timezone.now()
        lease = now + timedelta(seconds=hot_settings()["RUN_LEASE_SECONDS"])
        for run in kept:
            run.status, run.claimed_by = RunStatus.RUNNING, token
            run.started_at, run.lease_expires_at = now, lease
    if any(run.wait_reason == WaitReason.DEBOUNCE for run in runs):
        # A debounced run replaces its key's earlier one: the two writes commit together.
        with transaction.atomic(savepoint=False):
            flow_claim.replace_debounced(runs)
            insert_together(*also, events, runs)
    else:
        insert_together(*also, events, runs)
    # Held runs (a delayed event's) get their doorbell when runtime.holds releases them.
    dispatch.enqueue_on_commit(
        [run.id for run in runs if run.available_at is None and run.status == RunStatus.QUEUED]
    )
    if events:  # the events list shows them, handled or not
        runs_changed()
    return kept


def event_rows(sent: Sent) -> tuple[list[Event], list[Run]]:
    """The Event rows and one queued Run per subscribed handler, unsaved."""
    now = timezone.now()
    events: list[Event] = []
    runs: list[Run] = []
    for item, source_run_id, stream_id in sent:
        handlers = handlers_for(item.type)
        stream = stream_id or item.id
        events.append(
            Event(
                id=item.id,
                type=item.type,
                data=item.data,
                source_run_id=source_run_id,
                stream_id=stream,
                created_at=now,
                is_handled=bool(handlers),
                deliver_at=item.deliver_at,
            )
        )
        for handler in handlers:
            flow_key, priority = flow.columns(handler.flow, item.id, item.type, item.data)
            available_at, reason = item.deliver_at, WaitReason.DELAY if item.deliver_at else ""
            if handler.flow.debounce_seconds is not None:
                # Held for the debounce from when the event is due: a later event for the key
                # replaces this run meanwhile (runtime.flow_claim.replace_debounced).
                debounce = timedelta(seconds=handler.flow.debounce_seconds)
                available_at, reason = (item.deliver_at or now) + debounce, WaitReason.DEBOUNCE
            runs.append(
                Run(
                    function=handler.name,
                    trigger=Trigger.EVENT,
                    event_id=item.id,
                    event_type=item.type,
                    stream_id=stream,
                    input=item.data,
                    status=RunStatus.QUEUED,
                    retry_policy=handler.retry.as_dict(),
                    created_at=now,
                    updated_at=now,
                    queued_at=now,
                    available_at=available_at,
                    wait_reason=reason,
                    priority=priority,
                    flow_key=flow_key,
                )
            )
    return events, runs


def _autocommit_on_postgresql() -> bool:
    return connection.vendor == "postgresql" and not connection.in_atomic_block
