"""The sweeper: the periodic pass that makes the broker only a doorbell.

It re-enqueues queued runs whose message may be lost, promotes due retries whose promotion
message was lost, re-queues runs whose worker died (lease lapsed), and ends runs that ignored a
cancel request past the grace period; it also rings again for bulk operations whose worker died
(runtime.bulk.resume_stalled). Every transition is a conditional UPDATE, so several sweepers,
or a sweeper racing a worker, cannot make one twice (two may ring the same doorbell twice, which
is harmless: a second delivery of a run is a no-op).
"""

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from hotapp.conf import hot_settings
from hotapp.models import Run, RunStatus, Task, TaskStatus
from runtime import alerts, bulk, dispatch, holds, retry_attempts, tasks
from runtime.exceptions import HotError, TaskTimedOut
from runtime.executor import describe_error
from runtime.transitions import transition

logger = logging.getLogger("hot.sweeper")
BATCH = 500


class WorkerLost(HotError):
    """The worker running this run died (its lease lapsed) too many times."""


def sweep(now: datetime | None = None) -> dict[str, int]:
    """One pass; returns how many runs each step touched."""
    now = now or timezone.now()
    return {
        "requeued": requeue_stale(now),
        "released": holds.release_due(now),
        "promoted": promote_due_retries(now),
        "recovered": recover_expired_leases(now),
        "force_cancelled": force_overdue_cancels(now),
        "timed_out": force_task_timeouts(now),
        "settled": tasks.settle_orphans(),
        "bulk_resumed": bulk.resume_stalled(now),
        "alerts_rung": alerts.ring_if_due(now),
    }


def requeue_stale(now: datetime) -> int:
    cutoff = now - timedelta(seconds=hot_settings()["REQUEUE_AFTER_SECONDS"])
    stale = list(
        # A held run has no doorbell to lose: runtime.holds rings when it is released.
        Run.objects.filter(status=RunStatus.QUEUED, queued_at__lte=cutoff, available_at=None)
        .order_by("queued_at")
        .values_list("id", "trigger")[:BATCH]
    )
    if not stale:
        return 0
    # Only the doorbell's time: a run's place in the queue is its created_at (claim_batch).
    Run.objects.filter(id__in=[i for i, _ in stale], status=RunStatus.QUEUED).update(queued_at=now)
    dispatch.enqueue_by_queue(stale)
    logger.info("re-enqueued %d queued runs", len(stale), extra={"action": "requeue"})
    return len(stale)


def promote_due_retries(now: datetime) -> int:
    ids = list(
        Run.objects.filter(status=RunStatus.PENDING_RETRY, next_retry_at__lte=now)
        .order_by("next_retry_at")
        .values_list("id", flat=True)[:BATCH]
    )
    return sum(1 for run_id in ids if retry_attempts.promote(run_id, now) is not None)


def recover_expired_leases(now: datetime) -> int:
    lapsed = list(
        Run.objects.filter(status=RunStatus.RUNNING, lease_expires_at__lt=now).values_list(
            "id", "claimed_by", "recovery_count", "cancel_requested_at", "trigger"
        )[:BATCH]
    )
    recovered: list = []
    ended = 0
    for run_id, token, recoveries, cancel_requested_at, trigger in lapsed:
        # Matching on the claim token: if the worker finished meanwhile, nothing happens.
        still_lost = Run.objects.filter(id=run_id, status=RunStatus.RUNNING, claimed_by=token)
        if cancel_requested_at is not None:
            # Someone asked to stop it and its worker is gone: it has stopped.
            ended += transition(
                still_lost,
                now=now,
                status=RunStatus.CANCELLED,
                finished_at=now,
                lease_expires_at=None,
            )
        elif recoveries < hot_settings()["MAX_RECOVERIES"]:
            if transition(
                still_lost,
                now=now,
                status=RunStatus.QUEUED,
                claimed_by="",
                started_at=None,
                lease_expires_at=None,
                queued_at=now,
                recovery_count=F("recovery_count") + 1,
            ):
                recovered.append((run_id, trigger))
        else:
            error = describe_error(
                WorkerLost(
                    f"The worker running this run died {recoveries + 1} times "
                    f"(HOT_MAX_RECOVERIES={hot_settings()['MAX_RECOVERIES']}); last claim {token}"
                )
            )
            ended += transition(
                still_lost,
                now=now,
                status=RunStatus.FAILED,
                finished_at=now,
                lease_expires_at=None,
                **error,
            )
    if recovered:
        logger.warning(
            "re-queued %d runs whose worker died", len(recovered), extra={"action": "recover"}
        )
        dispatch.enqueue_by_queue(recovered)
    return len(recovered) + ended


def force_overdue_cancels(now: datetime) -> int:
    cutoff = now - timedelta(seconds=hot_settings()["CANCEL_GRACE_SECONDS"])
    return transition(
        Run.objects.filter(status=RunStatus.RUNNING, cancel_requested_at__lte=cutoff),
        now=now,
        status=RunStatus.CANCELLED,
        finished_at=now,
        lease_expires_at=None,
    )


def force_task_timeouts(now: datetime) -> int:
    """End tasks that ran past their deadline without noticing (a handler that never reaches a
    checkpoint, receive or traced call), HOT_CANCEL_GRACE_SECONDS after it."""
    cutoff = now - timedelta(seconds=hot_settings()["CANCEL_GRACE_SECONDS"])
    overdue = list(
        Task.objects.filter(status__in=tasks.UNDERWAY_STATUSES, deadline_at__lt=cutoff).values_list(
            "id", flat=True
        )[:BATCH]
    )
    error = describe_error(TaskTimedOut("The task ran past its timeout and was stopped"))
    for task_id in overdue:
        with transaction.atomic():
            active = Run.objects.filter(task_id=task_id, status__in=tasks.ACTIVE_RUN_STATUSES)
            transition(
                active,
                now=now,
                status=RunStatus.FAILED,
                finished_at=now,
                lease_expires_at=None,
                next_retry_at=None,
                **error,
            )
            tasks.record_outcome(
                task_id,
                TaskStatus.TIMED_OUT,
                error_type=error["error_type"],
                error_message=error["error_message"],
            )
    return len(overdue)
