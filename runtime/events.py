"""send(): persist an event and one queued run per subscribed handler."""

import uuid
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.db.models.sql import InsertQuery
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
    if _autocommit_on_postgresql():
        # In autocommit the event and its runs go in one statement, its own transaction: one
        # round trip instead of four (BEGIN, two INSERTs, COMMIT).
        persist_events([(pending, None, None)])
    else:
        with transaction.atomic():
            persist_events([(pending, None, None)])
    return pending.id


def persist_events(
    sent: Iterable[tuple[PendingEvent, uuid.UUID | None, uuid.UUID | None]],
) -> list[uuid.UUID]:
    """Insert events, given as (event, the run that sent it, its stream), and their runs, in
    one INSERT each; ring the workers' doorbell once the transaction commits.

    Must be called inside `transaction.atomic()`, or on PostgreSQL in autocommit, where the two
    INSERTs are one statement. With no stream an event starts a new stream, identified by the
    event's own id.
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
    if _autocommit_on_postgresql():
        _insert_in_one_statement(events, runs)
    else:
        Event.objects.bulk_create(events)
        if runs:
            Run.objects.bulk_create(runs)
    run_ids = [run.id for run in runs]
    dispatch.enqueue_on_commit(run_ids)
    if run_ids:
        runs_changed()
    return run_ids


def _autocommit_on_postgresql() -> bool:
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def _insert_sql(objs: list) -> tuple[str, list]:
    """The INSERT Django's bulk_create would run for `objs` (one model, ids already set)."""
    meta = objs[0]._meta
    query = InsertQuery(type(objs[0]))
    query.insert_values(meta.concrete_fields, objs)
    [(sql, params)] = query.get_compiler(connection=connection).as_sql()
    return sql, list(params)


def _insert_in_one_statement(events: list[Event], runs: list[Run]) -> None:
    """INSERT the events and their runs with one PostgreSQL statement (a data-modifying CTE)."""
    sql, params = _insert_sql(events)
    if runs:
        run_sql, run_params = _insert_sql(runs)
        sql, params = f"WITH events AS ({sql}) {run_sql}", params + run_params
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
