"""send(): persist an event and one queued run per subscribed handler."""

import uuid
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from hotapp.ids import uuid7
from hotapp.models import Event, Run, RunStatus, Trigger
from runtime import dispatch
from runtime.context import PendingEvent, current_run
from runtime.live import runs_changed
from runtime.payloads import check_json, validate_event_type
from runtime.registry import handlers_for


def send(event_type: str, data: Any = None) -> uuid.UUID:
    """Send an event; returns its id.

    Outside a run the event and its runs are committed before this returns, or, inside the
    caller's `transaction.atomic()`, together with the caller's transaction. Inside a handler the
    event is held until the run succeeds and committed with its result: a failed attempt sends
    nothing. Raises `InvalidEventType` or `PayloadError` with nothing written.
    """
    validate_event_type(event_type)
    if data is None:
        data = {}
    check_json(data, f"Payload of {event_type!r}")
    pending = PendingEvent(uuid7(), event_type, data)
    ctx = current_run()
    if ctx is not None:
        ctx.check_cancelled()
        ctx.outbox.append(pending)
        return pending.id
    with transaction.atomic():
        persist_events([(pending, None, None)])
    return pending.id


def persist_events(
    sent: Iterable[tuple[PendingEvent, uuid.UUID | None, uuid.UUID | None]],
) -> list[uuid.UUID]:
    """Insert events, given as (event, the run that sent it, its stream), and their runs, in
    one INSERT each; ring the workers' doorbell once the transaction commits.

    Must be called inside `transaction.atomic()`. With no stream an event starts a new stream,
    identified by the event's own id.
    """
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
            )
        )
        runs.extend(
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
            )
            for handler in handlers
        )
    Event.objects.bulk_create(events)
    if runs:
        Run.objects.bulk_create(runs)
    run_ids = [run.id for run in runs]
    dispatch.enqueue_on_commit(run_ids)
    if run_ids:
        runs_changed()
    return run_ids
