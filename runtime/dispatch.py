"""Ringing the workers' doorbell: a Celery message carrying a run id, never a payload.

On the event queue a message means "runs are queued": the worker that takes it claims the oldest
queued runs in batches until none is left (executor.drain), so N new runs need only enough
messages to wake enough workers, one per CLAIM_BATCH runs. A task attempt gets a message of its
own on the task queue and is run alone (executor.execute).
"""

import atexit
import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.db import transaction

from hotapp.conf import hot_settings
from runtime.bell import Bell
from runtime.celery_app import celery_app

logger = logging.getLogger("hot.dispatch")

# Rings within this long of a doorbell going out share the next one. A burst of sends from one
# process then costs a few broker messages, not one each (a publish costs more than the INSERT
# of the event it rings for), and the workers wake up that much less often for runs another
# worker has already claimed. The first ring after a quiet spell goes out at once.
DOORBELL_INTERVAL = 0.002


def queue_for(trigger: str) -> str | None:
    """Task attempts go to their own queue so that long tasks never starve event handlers."""
    return hot_settings()["TASK_QUEUE"] if trigger == "task" else None


def enqueue_on_commit(run_ids: Sequence[uuid.UUID], queue: str | None = None) -> None:
    """Enqueue runs once the current transaction commits (at once in autocommit)."""
    ids = list(run_ids)
    if ids:
        transaction.on_commit(lambda: enqueue(ids, queue))


def enqueue(run_ids: Sequence[uuid.UUID], queue: str | None = None) -> None:
    """Ring for queued runs, which must be committed already. The messages go out from the
    doorbell's own thread, coalesced with other rings of this process (see _publish); a broker
    failure is logged there, not raised here: the runs are queued in the database and the
    sweeper re-enqueues them."""
    _doorbell.ring((queue, run_id) for run_id in run_ids)


def enqueue_by_queue(runs: Sequence[tuple[uuid.UUID, str]]) -> None:
    """Ring for (id, trigger) pairs, each on its trigger's queue."""
    by_queue: dict[str | None, list] = {}
    for run_id, trigger in runs:
        by_queue.setdefault(queue_for(trigger), []).append(run_id)
    for queue, ids in by_queue.items():
        enqueue(ids, queue)


def flush() -> None:
    """Publish the doorbells rung so far before returning (a process about to exit, tests)."""
    _doorbell.flush()


def _publish(rung: list[tuple[str | None, uuid.UUID]]) -> None:
    """One message per task attempt on the task queue; on the event queue one per CLAIM_BATCH
    runs, since the worker that takes one claims the oldest queued runs in batches."""
    task_queue = hot_settings()["TASK_QUEUE"]
    events = [run_id for queue, run_id in rung if queue != task_queue]
    step = hot_settings()["CLAIM_BATCH"]
    doorbells: list[tuple[str, str | None, uuid.UUID]]
    doorbells = [("hot.execute_run", None, run_id) for run_id in events[::step]]
    doorbells += [("hot.execute_task", q, run_id) for q, run_id in rung if q == task_queue]
    app = celery_app()
    for sent, (task, queue, run_id) in enumerate(doorbells):
        try:
            app.send_task(task, (str(run_id),), queue=queue)
        except Exception:
            # The broker is away: the rest would fail as slowly; the sweeper rings them all.
            logger.warning(
                "could not enqueue %d doorbells; the sweeper will retry",
                len(doorbells) - sent,
                extra={"action": "enqueue_failed", "run_id": str(run_id)},
                exc_info=True,
            )
            return


_doorbell = Bell("hot-doorbell", _publish, DOORBELL_INTERVAL)
# A script that sends and exits at once (`hot send`) still rings before it goes.
atexit.register(flush)


def send_on_commit(task: str, args: tuple, failure: str, extra: dict, **options: Any) -> None:
    """Publish one Celery message once the current transaction commits. A broker failure is
    logged (`failure` says who recovers it), not raised: each such message has a sweeper step
    behind it."""

    def publish() -> None:
        try:
            celery_app().send_task(task, args, **options)
        except Exception:
            logger.warning(failure, extra=extra, exc_info=True)

    transaction.on_commit(publish)


def schedule_retry_promotion(run_id: uuid.UUID, delay: timedelta) -> None:
    """Ask a worker to promote a pending retry when it is due; the sweeper is the fallback."""
    send_on_commit(
        "hot.promote_retry",
        (str(run_id),),
        "could not schedule retry promotion; the sweeper will promote it",
        {"action": "schedule_retry_failed", "run_id": str(run_id)},
        countdown=delay.total_seconds(),
    )
