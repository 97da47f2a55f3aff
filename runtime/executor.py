"""Execute one run: claim it, call its handler, commit the outcome.

The happy path is two transactions: the claim (one conditional UPDATE … RETURNING) and the
completion (the run's outcome, the events it sent and their new runs, in one transaction).
"""

import logging
import os
import secrets
import socket
import traceback
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from hotapp.models import Run, RunStatus
from runtime import dispatch, registry
from runtime.context import Event, PendingEvent, RunContext, activate
from runtime.db import with_db_retry
from runtime.events import persist_events
from runtime.exceptions import Cancelled, HandlerNotFound, PayloadError
from runtime.lease import lease_keeper
from runtime.payloads import check_json
from runtime.retry import delay_ms_before, has_retry_left

logger = logging.getLogger("hot.executor")

_HOST = f"{socket.gethostname()}:{os.getpid()}"
MAX_ERROR_MESSAGE = 10_000
MAX_TRACEBACK = 50_000


def execute(run_id: str | uuid.UUID) -> None:
    """Run `run_id` if it is still queued; otherwise (duplicate delivery, cancelled) do nothing."""
    try:
        rid = run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))
    except ValueError:
        logger.error("ignoring a message with a malformed run id %r", run_id)
        return
    token = f"{_HOST}:{secrets.token_hex(4)}"
    run = with_db_retry(lambda: claim(rid, token), "claim")
    if run is None:
        return
    handler = registry.handler_named(run.function)
    if handler is None:
        _finish_failed(
            run,
            token,
            HandlerNotFound(
                f"No handler named {run.function!r} is registered in this worker; deploy it and "
                "retry the run"
            ),
            allow_retry=False,
        )
        return

    ctx = RunContext(run.id, run.function, run.attempt, run.stream_id, run.origin_run_id)
    event = Event(id=run.event_id, type=run.event_type, data=run.input)
    lease_keeper.track(ctx, token)
    try:
        with activate(ctx):
            result = handler.fn(event)
        check_json(result, f"Result of {run.function}")
    except Cancelled:
        _finish_cancelled(run, token)
        return
    except Exception as exc:
        _finish_failed(run, token, exc, allow_retry=not isinstance(exc, PayloadError))
        return
    finally:
        # Also on SystemExit and the like: the lease then lapses and the sweeper re-queues.
        lease_keeper.untrack(run.id)
    _finish_succeeded(run, token, result, ctx.outbox)


def claim(run_id: uuid.UUID, token: str) -> Run | None:
    """Atomically move a queued run to running under `token`; None if it was not queued.

    One conditional UPDATE: of two workers handed the same run, only one sees a row come back.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=settings.HOT["RUN_LEASE_SECONDS"])
    meta = Run._meta
    sql = (
        f"UPDATE {meta.db_table} SET status = %s, started_at = %s, lease_expires_at = %s, "
        "claimed_by = %s WHERE id = %s AND status = %s RETURNING *"
    )
    started = meta.get_field("started_at")
    params = [
        str(RunStatus.RUNNING),
        started.get_db_prep_value(now, connection),
        started.get_db_prep_value(lease, connection),
        token,
        meta.pk.get_db_prep_value(run_id, connection),
        str(RunStatus.QUEUED),
    ]
    rows = list(Run.objects.raw(sql, params))
    return rows[0] if rows else None


def _finish_succeeded(run: Run, token: str, result: Any, outbox: list[PendingEvent]) -> None:
    def commit() -> None:
        with transaction.atomic():
            updated = Run.objects.filter(
                id=run.id, status=RunStatus.RUNNING, claimed_by=token
            ).update(
                status=RunStatus.SUCCEEDED,
                result=result,
                finished_at=timezone.now(),
                lease_expires_at=None,
            )
            # 0 rows: the run was cancelled or recovered while it ran; its sends are dropped.
            if updated and outbox:
                persist_events(outbox, source_run_id=run.id, stream_id=run.stream_id)

    with_db_retry(commit, "completion")


def _finish_failed(run: Run, token: str, exc: BaseException, allow_retry: bool) -> None:
    policy = run.retry_policy or {}
    now = timezone.now()
    retry_delay: timedelta | None = None
    if allow_retry and has_retry_left(policy, run.attempt):
        retry_delay = timedelta(milliseconds=delay_ms_before(policy, run.attempt))
    error = describe_error(exc)

    def commit() -> None:
        with transaction.atomic():
            updated = Run.objects.filter(
                id=run.id, status=RunStatus.RUNNING, claimed_by=token
            ).update(
                status=RunStatus.PENDING_RETRY if retry_delay is not None else RunStatus.FAILED,
                next_retry_at=now + retry_delay if retry_delay is not None else None,
                finished_at=now,
                lease_expires_at=None,
                **error,
            )
            if updated and retry_delay is not None:
                dispatch.schedule_retry_promotion(run.id, retry_delay)

    with_db_retry(commit, "failure")


def _finish_cancelled(run: Run, token: str) -> None:
    def commit() -> None:
        Run.objects.filter(id=run.id, status=RunStatus.RUNNING, claimed_by=token).update(
            status=RunStatus.CANCELLED, finished_at=timezone.now(), lease_expires_at=None
        )

    with_db_retry(commit, "cancellation")


def describe_error(exc: BaseException) -> dict[str, str]:
    """The error columns of a run for an exception, bounded in size."""
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__}.{name}"
    tb = "".join(traceback.format_exception(exc))
    return {
        "error_type": name[:300],
        "error_message": str(exc)[:MAX_ERROR_MESSAGE],
        "error_traceback": tb[-MAX_TRACEBACK:],
    }
