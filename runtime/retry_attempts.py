"""Turning a failed attempt into the next one: a new Run row, same input, linked to its origin."""

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from hotapp.models import Run, RunStatus
from runtime import dispatch
from runtime.exceptions import InvalidTransition
from runtime.live import runs_changed
from runtime.transitions import transition

# A promotion message may arrive a hair before next_retry_at by the clock of another machine.
EARLY_TOLERANCE = timedelta(milliseconds=200)


def promote(run_id: str | uuid.UUID, now: datetime | None = None) -> Run | None:
    """Replace a due pending retry by its next attempt; None if it is not (or no longer) due.

    The conditional UPDATE is the guard: of the promotion message and the sweeper, only the one
    that moves the row from pending_retry to failed creates the next attempt.
    """
    now = now or timezone.now()
    with transaction.atomic():
        promoted = transition(
            Run.objects.filter(
                id=run_id, status=RunStatus.PENDING_RETRY, next_retry_at__lte=now + EARLY_TOLERANCE
            ),
            now=now,
            status=RunStatus.FAILED,
        )
        if not promoted:
            return None
        return _insert_next_attempt(Run.objects.get(id=run_id), now)


def next_attempt(failed_run: Run) -> Run:
    """A manual retry of a failed run: the next attempt of its chain, same input."""
    try:
        with transaction.atomic():
            return _insert_next_attempt(failed_run, timezone.now())
    except IntegrityError:
        # The (origin_run, attempt) unique constraint: someone retried this attempt already.
        raise InvalidTransition(
            f"Attempt {failed_run.attempt} was already retried; retry the latest attempt"
        ) from None


def next_attempts(failed_runs: Sequence[Run]) -> list[uuid.UUID]:
    """Manual retries of many failed runs (a bulk retry) in one INSERT; returns the ids of the
    new attempts. A run whose next attempt exists already is left out: the unique (origin_run,
    attempt) turns its row into ON CONFLICT DO NOTHING, after waiting for the transaction that
    inserted the other one (another bulk operation, a person's retry) to commit."""
    now = timezone.now()
    attempts = [_attempt_after(run, now) for run in failed_runs]
    Run.objects.bulk_create(attempts, ignore_conflicts=True)
    inserted = Run.objects.filter(id__in=[a.id for a in attempts]).values_list("id", "trigger")
    by_queue: dict[str | None, list[uuid.UUID]] = {}
    for attempt_id, trigger in inserted:
        by_queue.setdefault(dispatch.queue_for(trigger), []).append(attempt_id)
    for queue, ids in by_queue.items():
        dispatch.enqueue_on_commit(ids, queue)
    if by_queue:
        runs_changed()
    return [attempt_id for ids in by_queue.values() for attempt_id in ids]


def _insert_next_attempt(previous: Run, now: datetime) -> Run:
    attempt = _attempt_after(previous, now)
    attempt.save(force_insert=True)
    dispatch.enqueue_on_commit([attempt.id], dispatch.queue_for(attempt.trigger))
    runs_changed()
    return attempt


def _attempt_after(previous: Run, now: datetime) -> Run:
    return Run(
        function=previous.function,
        trigger=previous.trigger,
        event_id=previous.event_id,
        event_type=previous.event_type,
        stream_id=previous.stream_id,
        input=previous.input,
        status=RunStatus.QUEUED,
        attempt=previous.attempt + 1,
        origin_run_id=previous.origin_run_id or previous.id,
        retry_policy=previous.retry_policy,
        task_id=previous.task_id,
        schedule_id=previous.schedule_id,
        scheduled_at=previous.scheduled_at,
        created_at=now,
        updated_at=now,
        queued_at=now,
    )
