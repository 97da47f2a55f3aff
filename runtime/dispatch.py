"""Ringing the workers' doorbell: a Celery message carrying a run id, never a payload.

On the event queue a message means "runs are queued": the worker that takes it claims the oldest
queued runs in batches until none is left (executor.drain), so N new runs need only enough
messages to wake enough workers, one per CLAIM_BATCH runs. A task attempt gets a message of its
own on the task queue and is run alone (executor.execute).
"""

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db import transaction

logger = logging.getLogger("hot.dispatch")


def queue_for(trigger: str) -> str | None:
    """Task attempts go to their own queue so that long tasks never starve event handlers."""
    return settings.HOT["TASK_QUEUE"] if trigger == "task" else None


def enqueue_on_commit(run_ids: Sequence[uuid.UUID], queue: str | None = None) -> None:
    """Enqueue runs once the current transaction commits (at once in autocommit)."""
    ids = list(run_ids)
    if ids:
        transaction.on_commit(lambda: enqueue(ids, queue))


def enqueue(run_ids: Sequence[uuid.UUID], queue: str | None = None) -> None:
    """Ring for queued runs: on the task queue one message per run, on the event queue one per
    CLAIM_BATCH runs. A broker failure is logged, not raised: the runs are already committed as
    queued and the sweeper re-enqueues them."""
    from runtime.celery_tasks import execute_run, execute_task

    if queue == settings.HOT["TASK_QUEUE"]:
        doorbells = [(execute_task, run_id) for run_id in run_ids]
    else:
        step = settings.HOT["CLAIM_BATCH"]
        doorbells = [(execute_run, run_ids[i]) for i in range(0, len(run_ids), step)]
    for task, run_id in doorbells:
        try:
            task.apply_async((str(run_id),), queue=queue)
        except Exception:
            logger.warning(
                "could not enqueue run; the sweeper will retry",
                extra={"action": "enqueue_failed", "run_id": str(run_id)},
                exc_info=True,
            )


def schedule_retry_promotion(run_id: uuid.UUID, delay: timedelta) -> None:
    """Ask a worker to promote a pending retry when it is due; the sweeper is the fallback."""
    from runtime.celery_tasks import promote_retry

    def publish() -> None:
        try:
            promote_retry.apply_async((str(run_id),), countdown=delay.total_seconds())
        except Exception:
            logger.warning(
                "could not schedule retry promotion; the sweeper will promote it",
                extra={"action": "schedule_retry_failed", "run_id": str(run_id)},
                exc_info=True,
            )

    transaction.on_commit(publish)
