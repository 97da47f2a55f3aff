"""Execute one run: claim it, call its handler, commit the outcome.

The happy path is two transactions: the claim (one conditional UPDATE … RETURNING) and the
completion (the run's outcome, the events it sent and their new runs, in one transaction).
"""

import asyncio
import inspect
import logging
import os
import secrets
import socket
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypedDict

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from hotapp.models import Run, RunStatus, RunTrace, TaskStatus
from runtime import dispatch, registry, tasks
from runtime.context import Event, RunContext, Tick, activate
from runtime.db import with_db_retry
from runtime.events import persist_events
from runtime.exceptions import Cancelled, HandlerNotFound, PayloadError, TaskTimedOut, type_name
from runtime.lease import lease_keeper
from runtime.live import runs_changed
from runtime.payloads import check_json
from runtime.retry import delay_ms_before, has_retry_left
from runtime.tracer import Tracer, set_current_tracer, user_code
from runtime.transitions import transition

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
    tracer = new_tracer(ctx) if handler.trace and settings.HOT["TRACE"] else None
    lease_keeper.track(ctx, token)
    try:
        argument = handler_argument(handler.kind, run, ctx)
        with activate(ctx), tracing(tracer):
            result = call_handler(handler.fn, argument)
        check_json(result, f"Result of {run.function}")
    except Cancelled:
        _finish_cancelled(run, token, _document(tracer))
        return
    except TaskTimedOut:
        timed_out = TaskTimedOut(f"Task {run.task_id} ran past its timeout")
        _finish_failed(run, token, timed_out, False, _document(tracer))
        return
    except Exception as exc:
        allow_retry = not isinstance(exc, PayloadError)
        _finish_failed(run, token, exc, allow_retry, _document(tracer))
        return
    finally:
        # Also on SystemExit and the like: the lease then lapses and the sweeper re-queues.
        lease_keeper.untrack(run.id)
    _finish_succeeded(run, token, result, ctx, _document(tracer))


def handler_argument(kind: str, run: Run, ctx: RunContext) -> Any:
    """What the handler is called with: the event, the schedule tick, or the task's context."""
    if kind == "task":
        if run.task_id is None:
            raise HandlerNotFound(f"{run.function} is a task; start it with runtime.start()")
        return tasks.begin_attempt(run, ctx)
    if kind == "schedule":
        return Tick(scheduled_at=run.scheduled_at or run.created_at, schedule=run.function)
    return Event(id=run.event_id, type=run.event_type, data=run.input)


def call_handler(fn: Callable[[Any], Any], argument: Any) -> Any:
    if inspect.iscoroutinefunction(fn):
        # An async handler gets an event loop of its own on this worker thread.
        return asyncio.run(fn(argument))
    return fn(argument)


def new_tracer(ctx: RunContext) -> Tracer:
    hot = settings.HOT
    return Tracer(
        user_code(),
        hot["TRACE_MAX_SPANS"],
        hot["TRACE_MAX_BYTES"],
        hot["TRACE_VALUE_CHARS"],
        # Every traced call is a point where a cancel request takes effect.
        on_call=ctx.check_cancelled,
    )


@contextmanager
def tracing(tracer: Tracer | None) -> Iterator[None]:
    if tracer is None:
        yield
        return
    set_current_tracer(tracer)
    tracer.start()
    try:
        yield
    finally:
        tracer.stop()
        set_current_tracer(None)


def _document(tracer: Tracer | None) -> dict | None:
    return tracer.document() if tracer is not None else None


def _save_trace(run_id: uuid.UUID, document: dict | None) -> None:
    if document is not None:
        RunTrace.objects.create(
            run_id=run_id,
            data=document,
            span_count=document["span_count"],
            is_truncated=document["is_truncated"],
        )


def claim(run_id: uuid.UUID, token: str) -> Run | None:
    """Atomically move a queued run to running under `token`; None if it was not queued.

    One conditional UPDATE: of two workers handed the same run, only one sees a row come back.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=settings.HOT["RUN_LEASE_SECONDS"])
    meta = Run._meta
    sql = (
        f"UPDATE {meta.db_table} SET status = %s, started_at = %s, updated_at = %s, "
        "lease_expires_at = %s, claimed_by = %s WHERE id = %s AND status = %s RETURNING *"
    )
    started = meta.get_field("started_at")
    params = [
        str(RunStatus.RUNNING),
        started.get_db_prep_value(now, connection),
        started.get_db_prep_value(now, connection),
        started.get_db_prep_value(lease, connection),
        token,
        meta.pk.get_db_prep_value(run_id, connection),
        str(RunStatus.QUEUED),
    ]
    rows = list(Run.objects.raw(sql, params))
    if rows:
        runs_changed()
    return rows[0] if rows else None


def _finish_succeeded(
    run: Run, token: str, result: Any, ctx: RunContext, trace: dict | None
) -> None:
    def commit() -> None:
        with transaction.atomic():
            updated = transition(
                Run.objects.filter(id=run.id, status=RunStatus.RUNNING, claimed_by=token),
                status=RunStatus.SUCCEEDED,
                result=result,
                finished_at=timezone.now(),
                lease_expires_at=None,
            )
            # 0 rows: the run was cancelled or recovered while it ran; its sends are dropped.
            if updated:
                _save_trace(run.id, trace)
                if ctx.outbox:
                    persist_events(ctx.outbox, source_run_id=run.id, stream_id=run.stream_id)
                for effect in ctx.on_success:  # tasks it started
                    effect()
                if run.task_id:
                    tasks.record_outcome(run.task_id, TaskStatus.COMPLETED, result=result)

    with_db_retry(commit, "completion")


def _finish_failed(
    run: Run, token: str, exc: BaseException, allow_retry: bool, trace: dict | None = None
) -> None:
    policy = run.retry_policy or {}
    now = timezone.now()
    retry_delay: timedelta | None = None
    if allow_retry and has_retry_left(policy, run.attempt):
        retry_delay = timedelta(milliseconds=delay_ms_before(policy, run.attempt))
    error = describe_error(exc)

    def commit() -> None:
        with transaction.atomic():
            updated = transition(
                Run.objects.filter(id=run.id, status=RunStatus.RUNNING, claimed_by=token),
                status=RunStatus.PENDING_RETRY if retry_delay is not None else RunStatus.FAILED,
                next_retry_at=now + retry_delay if retry_delay is not None else None,
                finished_at=now,
                lease_expires_at=None,
                **error,
            )
            if updated:
                _save_trace(run.id, trace)
            if updated and retry_delay is not None:
                dispatch.schedule_retry_promotion(run.id, retry_delay)
            elif updated and run.task_id:
                timed_out = isinstance(exc, TaskTimedOut)
                tasks.record_outcome(
                    run.task_id,
                    TaskStatus.TIMED_OUT if timed_out else TaskStatus.FAILED,
                    error_type=error["error_type"],
                    error_message=error["error_message"],
                )

    with_db_retry(commit, "failure")


def _finish_cancelled(run: Run, token: str, trace: dict | None) -> None:
    def commit() -> None:
        with transaction.atomic():
            if transition(
                Run.objects.filter(id=run.id, status=RunStatus.RUNNING, claimed_by=token),
                status=RunStatus.CANCELLED,
                finished_at=timezone.now(),
                lease_expires_at=None,
            ):
                _save_trace(run.id, trace)
                if run.task_id:
                    tasks.record_outcome(run.task_id, TaskStatus.CANCELLED)

    with_db_retry(commit, "cancellation")


class ErrorFields(TypedDict):
    error_type: str
    error_message: str
    error_traceback: str


def describe_error(exc: BaseException) -> ErrorFields:
    """The error columns of a run for an exception, bounded in size."""
    name = type_name(exc)
    tb = "".join(traceback.format_exception(exc))
    return {
        "error_type": name[:300],
        "error_message": str(exc)[:MAX_ERROR_MESSAGE],
        "error_traceback": tb[-MAX_TRACEBACK:],
    }
