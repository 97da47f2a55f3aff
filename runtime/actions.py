"""What a person can do to a run from the dashboard, the API or the shell.

Each action takes an optional `actor` (runtime.audit.Actor: who, and through what) and records
it in the action's own transaction; without one, the entry says a program did it.
"""

import uuid

from django.db import transaction
from django.utils import timezone

from hotapp.ids import uuid7
from hotapp.models import (
    TERMINAL_STATUSES,
    AuditAction,
    Event,
    Run,
    RunStatus,
    Trigger,
    WaitReason,
)
from runtime import audit, dispatch, flow, registry, retry_attempts
from runtime.audit import Actor
from runtime.exceptions import EventNotFound, InvalidTransition, RunNotFound
from runtime.live import runs_changed
from runtime.transitions import transition

TASK_ATTEMPT = (
    "A task's attempt cannot be retried or rerun on its own: its task ended with it. "
    "Start the task again with runtime.start()."
)


def _run_id(run_id: str | uuid.UUID) -> uuid.UUID:
    try:
        return run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))
    except ValueError:
        raise RunNotFound(f"{run_id!r} is not a run id") from None


def _get(run_id: str | uuid.UUID) -> Run:
    try:
        return Run.objects.get(id=_run_id(run_id))
    except Run.DoesNotExist:
        raise RunNotFound(f"No run has id {run_id}") from None


def retry_run(run_id: str | uuid.UUID, actor: Actor | None = None) -> Run:
    """Retry a failed run: a new attempt with the same input, linked by origin_run_id.

    Not for a task's attempts: their task has ended with them and would not hear of a new
    attempt's outcome (a task retries itself, by its own policy, while it is still going).
    """
    run = _get(run_id)
    if run.task_id:
        raise InvalidTransition(TASK_ATTEMPT)
    if run.status != RunStatus.FAILED:
        raise InvalidTransition(f"Only failed runs can be retried; this one is {run.status}")
    with transaction.atomic():
        attempt = retry_attempts.next_attempt(run)
        audit.record(AuditAction.RETRY, actor, run=run, result_run=attempt)
    return attempt


def rerun(run_id: str | uuid.UUID, actor: Actor | None = None) -> Run:
    """Run a finished run's handler again with the same input, as a fresh run in a new stream."""
    run = _get(run_id)
    if run.status not in TERMINAL_STATUSES:
        raise InvalidTransition(f"Only finished runs can be rerun; this one is {run.status}")
    if run.task_id:
        raise InvalidTransition(TASK_ATTEMPT)
    handler = registry.handler_named(run.function)
    now = timezone.now()
    # Under the handler's flow control as it is now (its limits, its priority), but never held
    # for a debounce: a person asked for this run.
    flow_key, priority = (
        flow.columns(handler.flow, run.event_id, run.event_type, run.input)
        if handler
        else (run.flow_key, run.priority)
    )
    with transaction.atomic():
        fresh = Run.objects.create(
            priority=priority,
            flow_key=flow_key,
            function=run.function,
            trigger=Trigger.MANUAL,
            event_id=run.event_id,
            event_type=run.event_type,
            stream_id=uuid7(),
            input=run.input,
            retry_policy=handler.retry.as_dict() if handler else run.retry_policy,
            rerun_of_id=run.id,
            schedule_id=run.schedule_id,
            scheduled_at=run.scheduled_at,
            created_at=now,
            updated_at=now,
            queued_at=now,
        )
        audit.record(AuditAction.RERUN, actor, run=run, result_run=fresh)
        dispatch.enqueue_on_commit([fresh.id], dispatch.queue_for(fresh.trigger))
        runs_changed()
    return fresh


def cancel_run(run_id: str | uuid.UUID, actor: Actor | None = None) -> str:
    """Cancel a run; returns its status afterwards.

    Queued and pending-retry runs are cancelled at once. A running run is asked to stop: its
    handler sees the request at its next `send()` or `check_cancelled()`, and the sweeper marks it
    cancelled anyway once HOT_CANCEL_GRACE_SECONDS have passed.
    """
    run_id = _run_id(run_id)
    with transaction.atomic():
        status = cancel_unrecorded(run_id)
        audit.record(AuditAction.CANCEL, actor, run_id=run_id)
    return status


def cancel_unrecorded(run_id: uuid.UUID) -> str:
    """cancel_run without an audit entry: for a task's cancel, which records its own."""
    unstarted = [RunStatus.QUEUED, RunStatus.PENDING_RETRY]
    # Conditional UPDATEs: a worker claiming the run at the same moment either wins (the run is
    # running, and gets a cancel request below) or loses (its claim finds it cancelled). The run
    # may also move back between the two (lease recovery re-queues a running run): then the
    # first UPDATE matches again, so go round until one matches or the run has finished.
    while True:
        now = timezone.now()
        if transition(
            Run.objects.filter(id=run_id, status__in=unstarted),
            now=now,
            status=RunStatus.CANCELLED,
            finished_at=now,
        ):
            return RunStatus.CANCELLED
        if transition(
            Run.objects.filter(
                id=run_id, status=RunStatus.RUNNING, cancel_requested_at__isnull=True
            ),
            now=now,
            cancel_requested_at=now,
        ):
            return RunStatus.RUNNING
        run = _get(run_id)
        if run.status == RunStatus.RUNNING and run.cancel_requested_at is not None:
            return run.status  # a cancel was already requested
        if run.status in TERMINAL_STATUSES:
            raise InvalidTransition(
                f"This run is {run.status}; only unfinished runs can be cancelled"
            )


def cancel_event(event_id: str | uuid.UUID, actor: Actor | None = None) -> int:
    """Cancel a delayed event before it is due: its runs still held for delivery (for its
    delay, or for a debounced handler's quiet period, which starts when the event is due) are
    cancelled, each with its own audit entry; returns how many. A run already released (due,
    or started) is not touched: cancel it with cancel_run."""
    try:
        event_id = event_id if isinstance(event_id, uuid.UUID) else uuid.UUID(str(event_id))
    except ValueError:
        raise EventNotFound(f"{event_id!r} is not an event id") from None
    if not Event.objects.filter(id=event_id).exists():
        raise EventNotFound(f"No event has id {event_id}")
    with transaction.atomic():
        now = timezone.now()
        # Locked first: the scheduler releasing these runs at the same moment either got
        # there before (they are no longer held, and are left alone) or waits for this
        # transaction and then finds them cancelled (its UPDATE checks the status again).
        held = Run.objects.filter(
            event_id=event_id,
            status=RunStatus.QUEUED,
            wait_reason__in=[WaitReason.DELAY, WaitReason.DEBOUNCE],
        )
        ids = list(held.select_for_update().values_list("id", flat=True))
        transition(
            Run.objects.filter(id__in=ids), now=now, status=RunStatus.CANCELLED, finished_at=now
        )
        for run_id in ids:
            audit.record(AuditAction.CANCEL, actor, run_id=run_id)
    return len(ids)
