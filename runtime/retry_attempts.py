"""Turning a failed attempt into the next one: a new Run row, same input, linked to its origin."""

import uuid
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
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
    that moves the row from pending_retry to failed creates the next attempt. The same UPDATE
    marks it superseded, so no reader ever sees a failed attempt that "needs attention" while
    its next attempt is being created.
    """
    now = now or timezone.now()
    with transaction.atomic():
        promoted = transition(
            Run.objects.filter(
                id=run_id, status=RunStatus.PENDING_RETRY, next_retry_at__lte=now + EARLY_TOLERANCE
            ),
            now=now,
            status=RunStatus.FAILED,
            is_superseded=True,
        )
        if not promoted:
            return None
        return _insert_next_attempt(Run.objects.get(id=run_id), now)


def next_attempt(failed_run: Run) -> Run:
    """A manual retry of a failed run: the next attempt of its chain, same input."""
    already = InvalidTransition(
        f"Attempt {failed_run.attempt} was already retried; retry the latest attempt"
    )
    now = timezone.now()
    try:
        with transaction.atomic():
            # Of two people pressing Retry at once, the second UPDATE waits for the first's row
            # lock, then finds the attempt superseded and matches nothing.
            if not transition(
                Run.objects.filter(id=failed_run.id, status=RunStatus.FAILED, is_superseded=False),
                now=now,
                is_superseded=True,
            ):
                raise already
            return _insert_next_attempt(failed_run, now)
    except IntegrityError:
        # The (origin_run, attempt) unique constraint, the database's own guard should a later
        # attempt ever exist without its predecessor marked superseded.
        raise already from None


def next_attempts(runs: QuerySet[Run]) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Manual retries of many runs at once (a bulk retry), inside the caller's transaction:
    each of `runs` that is still failed and not retried yet is marked superseded and gets its
    next attempt, all in one UPDATE and one INSERT; returns (retried run, its new attempt) ids."""
    now = timezone.now()
    # Locked in the list's order, so two operations over the same runs wait for each other and
    # never in a cycle; a person's Retry (next_attempt's UPDATE) waits likewise, then finds the
    # run superseded and matches nothing.
    failed = list(
        runs.filter(status=RunStatus.FAILED, is_superseded=False)
        .select_for_update()
        .order_by("-created_at", "-id")
    )
    if not failed:
        return []
    transition(Run.objects.filter(id__in=[run.id for run in failed]), now=now, is_superseded=True)
    attempts = Run.objects.bulk_create([_attempt_after(run, now) for run in failed])
    by_queue: dict[str | None, list[uuid.UUID]] = {}
    for attempt in attempts:
        by_queue.setdefault(dispatch.queue_for(attempt.trigger), []).append(attempt.id)
    for queue, ids in by_queue.items():
        dispatch.enqueue_on_commit(ids, queue)
    runs_changed()
    return [(run.id, attempt.id) for run, attempt in zip(failed, attempts, strict=True)]


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
        # The same limits and place in the queue as the attempt it repeats (runtime.flow).
        priority=previous.priority,
        flow_key=previous.flow_key,
        task_id=previous.task_id,
        schedule_id=previous.schedule_id,
        scheduled_at=previous.scheduled_at,
        created_at=now,
        updated_at=now,
        queued_at=now,
    )
