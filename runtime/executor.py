"""Execute runs: claim them, call their handlers, commit their outcomes.

The happy path is two transactions for a whole batch of runs: the claim (one conditional
UPDATE … RETURNING) and the completion (every outcome, the events the runs sent and their new
runs, in one transaction). A Celery message is only a doorbell: the worker that gets one claims
the oldest queued runs, up to a batch, and keeps claiming until the queue is empty (or
DRAIN_SECONDS pass), so a burst of N runs costs far fewer than N wake-ups and commits.
"""

import asyncio
import inspect
import logging
import os
import secrets
import socket
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypedDict

from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from hotapp.conf import hot_settings
from hotapp.models import Run, RunStatus, RunTrace, TaskStatus, Trigger
from runtime import dispatch, flow_claim, otel, registry, tasks
from runtime.context import Event, RunContext, Tick, activate
from runtime.db import with_db_retry
from runtime.events import persist_events
from runtime.exceptions import (
    Cancelled,
    HandlerNotFound,
    OutcomeNotStored,
    PayloadError,
    Suspended,
    TaskTimedOut,
    type_name,
)
from runtime.lease import lease_keeper
from runtime.live import runs_changed
from runtime.payloads import check_json, storable_text
from runtime.retry_policy import delay_ms_before, has_retry_left
from runtime.trace_recorder import Tracer, set_current_tracer, user_code
from runtime.transitions import write_claimed

logger = logging.getLogger("hot.executor")

_HOST = f"{socket.gethostname()}:{os.getpid()}"
MAX_ERROR_MESSAGE = 10_000
MAX_TRACEBACK = 50_000


# A worker keeps claiming for this long after a doorbell, then rings again and lets Celery
# take its next message (a warm shutdown waits at most this long).
DRAIN_SECONDS = 1.0
# How much handler time one batch may hold back its last run (see _BatchSizer).
BATCH_BUDGET_SECONDS = 0.05


def _parse(run_id: str | uuid.UUID | None) -> uuid.UUID | None:
    if run_id is None or isinstance(run_id, uuid.UUID):
        return run_id
    try:
        return uuid.UUID(str(run_id))
    except ValueError:
        logger.error("ignoring a message with a malformed run id %r", run_id)
        return None


def execute(run_id: str | uuid.UUID) -> None:
    """Run `run_id` alone if it is still queued; otherwise (duplicate delivery, cancelled) do
    nothing. Task attempts come this way: they are long, so they are never batched."""
    rid = _parse(run_id)
    if rid is None:
        return
    token = _new_token()
    runs = with_db_retry(partial(claim, rid, token), "claim")
    if runs:
        _run_batch(runs, token)


def drain(run_id: str | uuid.UUID | None = None) -> int:
    """Answer a doorbell of the event queue: claim and run the oldest queued runs in batches
    until none is left; returns how many ran. `run_id`, the run the doorbell was rung for, is
    not needed: the queue is served in order, and that run is in it if still queued."""
    try:
        return _drain()
    finally:
        # The doorbells this drain rang are out before the worker takes its next message, or
        # stops: a prefork child may exit without running atexit handlers.
        dispatch.flush()


def _drain() -> int:
    deadline = time.monotonic() + DRAIN_SECONDS
    token = _new_token()
    done = 0
    carried: list[Run] = []
    flow_first = True
    while True:
        # Runs the last batch queued come back already claimed by this worker (its next
        # step of the same workflows); only with none does it claim from the queue.
        runs = carried or _claim(token, _sizer.size(), flow_first)
        flow_first = False
        if not runs:
            return done
        more = time.monotonic() < deadline
        carried = _run_batch(runs, token, keep=_sizer.size() if more else 0)
        done += len(runs)
        if not more:
            # More may be queued: hand the rest back to Celery rather than hold this child.
            dispatch.enqueue([runs[-1].id])
            return done


def _claim(token: str, size: int, flow_first: bool) -> list[Run]:
    """Claim from the queue: flow-controlled runs (runtime.flow_claim) first once per drain, so
    a steady stream of other runs cannot starve them, then whenever the fast path has none.
    Without flow-controlled handlers claim_flow returns at once, with no query."""
    fast = partial(claim_batch, token, size)
    flow = partial(flow_claim.claim_flow, token, size)
    first, then = (flow, fast) if flow_first else (fast, flow)
    return with_db_retry(first, "claim") or with_db_retry(then, "claim")


def _new_token() -> str:
    return f"{_HOST}:{secrets.token_hex(4)}"


class _BatchSizer:
    """How many runs to claim at once: as many as fit in BATCH_BUDGET_SECONDS of handler time
    (a moving average per process), so that fast handlers are batched and slow ones are not and
    no claimed run waits long behind the others."""

    def __init__(self) -> None:
        self.average = BATCH_BUDGET_SECONDS / 4  # until measured: small batches

    def observe(self, seconds: float, count: int) -> None:
        self.average = 0.8 * self.average + 0.2 * (seconds / max(count, 1))

    def size(self) -> int:
        most = hot_settings()["CLAIM_BATCH"]
        return max(1, min(most, int(BATCH_BUDGET_SECONDS / max(self.average, 1e-6))))


_sizer = _BatchSizer()


@dataclass
class Outcome:
    """How one run ended, before it is committed."""

    run: Run
    ctx: RunContext
    status: str
    started_at: datetime | None  #: None if the handler was never called
    finished_at: datetime
    trace: dict | None = None
    result: Any = None
    error: "ErrorFields | None" = None
    retry_delay: timedelta | None = None
    task_status: str | None = None


def _run_batch(runs: list[Run], token: str, keep: int = 0) -> list[Run]:
    """Call each claimed run's handler in turn, then commit every outcome in one transaction;
    returns up to `keep` of the runs they queued, claimed under `token` (see complete)."""
    contexts = [
        RunContext(
            run.id,
            run.function,
            run.attempt,
            run.stream_id,
            run.origin_run_id,
            is_cancel_requested=run.cancel_requested_at is not None,
        )
        for run in runs
    ]
    for ctx in contexts:
        # Every run of the batch keeps its lease until the batch is committed: those waiting
        # their turn, and those done but not yet saved.
        lease_keeper.track(ctx, token)
    try:
        began = time.monotonic()
        outcomes = [_call(run, ctx) for run, ctx in zip(runs, contexts, strict=True)]
        _sizer.observe(time.monotonic() - began, len(runs))
        return _commit(outcomes, token, keep)
    finally:
        # Also on SystemExit and the like: the leases then lapse and the sweeper re-queues.
        for ctx in contexts:
            lease_keeper.untrack(ctx.run_id)


def _commit(outcomes: list[Outcome], token: str, keep: int) -> list[Run]:
    """Commit a batch's outcomes together or, if the database refuses that for any reason but
    being unreachable, one by one: a run whose outcome cannot be stored then ends failed on
    its own, instead of leaving the whole batch running until lease recovery runs it all
    again (and again, until WorkerLost)."""
    try:
        return with_db_retry(lambda: complete(outcomes, token, keep), "completion")
    except (OperationalError, InterfaceError):
        raise  # the database is away: the leases lapse and the sweeper re-queues the batch
    except Exception as exc:
        if len(outcomes) == 1:
            _commit_unstorable(outcomes[0], token, exc)
            return []
        logger.exception(
            "could not commit %d outcomes together; committing them one by one",
            len(outcomes),
            extra={"action": "complete_batch_failed"},
        )
    for outcome in outcomes:
        try:
            with_db_retry(partial(complete, [outcome], token), "completion")
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            _commit_unstorable(outcome, token, exc)
    return []


def _commit_unstorable(outcome: Outcome, token: str, exc: Exception) -> None:
    """End a run failed, without retry, when its own outcome could not be committed."""
    logger.error(
        "the outcome of run %s could not be stored",
        outcome.run.id,
        exc_info=exc,
        extra={"action": "outcome_not_stored", "run_id": str(outcome.run.id)},
    )
    error = OutcomeNotStored(
        f"The run ended {outcome.status}, but its outcome could not be stored "
        f"({type_name(exc)}: {_message(exc)}); it is not retried"
    )
    failed = Outcome(
        outcome.run,
        outcome.ctx,
        RunStatus.FAILED,
        outcome.started_at,
        outcome.finished_at,
        error=describe_error(error),
        task_status=TaskStatus.FAILED,
    )
    with_db_retry(partial(complete, [failed], token), "completion")


def _call(run: Run, ctx: RunContext) -> Outcome:
    if ctx.is_cancel_requested:
        # Asked to stop while it waited its turn in the batch (the lease keeper saw it) or
        # before it was claimed: it never starts.
        return Outcome(
            run, ctx, RunStatus.CANCELLED, None, timezone.now(), task_status=TaskStatus.CANCELLED
        )
    started = timezone.now()
    handler = registry.handler_named(run.function)
    if handler is None:
        missing = HandlerNotFound(
            f"No handler named {run.function!r} is registered in this worker; deploy it and "
            "retry the run"
        )
        return _failed(run, ctx, started, missing, allow_retry=False)
    tracer = new_tracer(ctx) if handler.trace and hot_settings()["TRACE"] else None
    try:
        argument = handler_argument(handler.kind, run, ctx)
        with activate(ctx), tracing(tracer):
            result = call_handler(handler.fn, argument)
        check_json(result, f"Result of {run.function}")
    except Cancelled:
        return Outcome(
            run,
            ctx,
            RunStatus.CANCELLED,
            started,
            timezone.now(),
            trace=_document(tracer),
            task_status=TaskStatus.CANCELLED,
        )
    except Suspended:  # a durable wait: runtime.waits has already re-queued the run, held
        return Outcome(run, ctx, RunStatus.QUEUED, started, timezone.now())
    except TaskTimedOut:
        timed_out = TaskTimedOut(f"Task {run.task_id} ran past its timeout")
        return _failed(run, ctx, started, timed_out, False, _document(tracer))
    except Exception as exc:
        allow_retry = not isinstance(exc, PayloadError)
        return _failed(run, ctx, started, exc, allow_retry, _document(tracer))
    return Outcome(
        run,
        ctx,
        RunStatus.SUCCEEDED,
        started,
        timezone.now(),
        trace=_document(tracer),
        result=result,
        task_status=TaskStatus.COMPLETED,
    )


def _failed(
    run: Run,
    ctx: RunContext,
    started: datetime,
    exc: BaseException,
    allow_retry: bool,
    trace: dict | None = None,
) -> Outcome:
    policy = run.retry_policy or {}
    retry_delay = None
    if allow_retry and has_retry_left(policy, run.attempt):
        retry_delay = timedelta(milliseconds=delay_ms_before(policy, run.attempt))
    return Outcome(
        run,
        ctx,
        RunStatus.PENDING_RETRY if retry_delay is not None else RunStatus.FAILED,
        started,
        timezone.now(),
        trace=trace,
        error=describe_error(exc),
        retry_delay=retry_delay,
        task_status=TaskStatus.TIMED_OUT if isinstance(exc, TaskTimedOut) else TaskStatus.FAILED,
    )


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
    hot = hot_settings()
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


_CLAIM_SET = "status = %s, started_at = %s, updated_at = %s, lease_expires_at = %s, claimed_by = %s"


def _claim_params(token: str) -> list:
    now = timezone.now()
    lease = now + timedelta(seconds=hot_settings()["RUN_LEASE_SECONDS"])
    field = Run._meta.get_field("started_at")
    stamp = field.get_db_prep_value(now, connection)
    return [
        str(RunStatus.RUNNING),
        stamp,
        stamp,
        field.get_db_prep_value(lease, connection),
        token,
    ]


def _claimed(sql: str, params: list) -> list[Run]:
    runs = list(Run.objects.raw(sql, params))
    if runs:
        runs_changed()
    return runs


def claim(run_id: uuid.UUID, token: str) -> list[Run]:
    """Atomically move one queued run to running under `token`; [] if it was not queued.

    One conditional UPDATE: of two workers handed the same run, only one sees a row come back.
    """
    table = Run._meta.db_table
    # A held run (a sleeping task, say) waits for its release, whatever doorbell comes; a
    # flow-controlled run may not skip its limits (runtime.flow_claim claims those).
    sql = (
        f"UPDATE {table} SET {_CLAIM_SET} "
        "WHERE id = %s AND status = %s AND available_at IS NULL AND flow_key IS NULL RETURNING *"
    )
    pk = Run._meta.pk.get_db_prep_value(run_id, connection)
    return _claimed(sql, [*_claim_params(token), pk, str(RunStatus.QUEUED)])


def claim_batch(token: str, size: int) -> list[Run]:
    """Atomically move up to `size` of the first queued runs (not task attempts, which have
    their own queue, nor held runs, nor flow-controlled ones, runtime.flow_claim's) to running
    under `token`, in queue order.

    Queue order is priority (higher first), then creation order: the sweeper ringing again
    for a run (queued_at) must not send it to the back of the queue. A run re-queued because
    its worker died is claimed alone, when it is the first: a run that crashes its worker must
    not take the leases of a batch down with it each time, spending their recovery budget as
    well as its own.

    One statement. The candidates are locked once, in a CTE; on PostgreSQL SKIP LOCKED lets
    workers claiming at the same moment take different runs instead of waiting for each
    other. SQLite has one writer at a time, so there the statement alone is the guard.
    """
    table = Run._meta.db_table
    skip_locked = connection.features.has_select_for_update_skip_locked
    lock = " FOR UPDATE SKIP LOCKED" if skip_locked else ""
    sql = (
        # Served by run_ready_idx (priority DESC, created_at, id) WHERE queued, not held and
        # not flow-controlled.
        f"WITH candidates AS (SELECT id, priority, created_at, recovery_count FROM {table} "
        "WHERE status = %s AND available_at IS NULL AND flow_key IS NULL AND trigger <> %s "
        f"ORDER BY priority DESC, created_at, id LIMIT %s{lock}), "
        "head AS (SELECT id, recovery_count FROM candidates "
        "ORDER BY priority DESC, created_at, id LIMIT 1) "
        f"UPDATE {table} SET {_CLAIM_SET} WHERE status = %s AND id IN ("
        "SELECT candidates.id FROM candidates, head WHERE CASE WHEN head.recovery_count > 0 "
        "THEN candidates.id = head.id ELSE candidates.recovery_count = 0 END) RETURNING *"
    )
    queued = str(RunStatus.QUEUED)
    params = [queued, str(Trigger.TASK), size, *_claim_params(token), queued]
    runs = _claimed(sql, params)
    runs.sort(key=lambda run: (-run.priority, run.created_at, run.id))
    return runs


# The columns an outcome writes (with updated_at); all are written, with the run's own value
# where an outcome leaves one alone.
_OUTCOME_FIELDS = [
    "status",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "result",
    "next_retry_at",
    "error_type",
    "error_message",
    "error_traceback",
]


def complete(outcomes: list[Outcome], token: str, keep: int = 0) -> list[Run]:
    """Commit a batch of outcomes in one transaction: the runs' new states, their traces, the
    events the succeeded runs sent with their new runs, and the tasks they started or ended.
    Up to `keep` of the new runs are inserted claimed under `token` and returned: the caller
    runs them next.

    Runs cancelled or recovered by someone else while they ran are no longer running under
    `token`; they are left alone and whatever they sent is dropped.
    """
    with transaction.atomic():
        for outcome in outcomes:
            _apply(outcome)
        runs = [outcome.run for outcome in outcomes]
        ours = write_claimed(runs, _OUTCOME_FIELDS, token, timezone.now())
        kept = [outcome for outcome in outcomes if outcome.run.id in ours]
        traces = [_trace_row(outcome) for outcome in kept if outcome.trace is not None]
        sent = [
            (pending, outcome.run.id, outcome.run.stream_id)
            for outcome in kept
            if outcome.status == RunStatus.SUCCEEDED
            for pending in outcome.ctx.outbox
        ]
        mine = persist_events(sent, traces, keep=keep, token=token)
        flow_claim.free_slots([outcome.run for outcome in kept])
        for outcome in kept:
            _after(outcome)
        otel.export_on_commit(kept)  # OpenTelemetry spans after the commit, if HOT["OTEL_EXPORT"]
    return mine


def _apply(outcome: Outcome) -> None:
    run = outcome.run
    run.status = outcome.status
    run.started_at = outcome.started_at
    run.finished_at = outcome.finished_at
    run.lease_expires_at = None
    # Every field set either way: an outcome may be applied again in place of another one
    # whose commit failed (_commit_unstorable).
    run.result = outcome.result if outcome.status == RunStatus.SUCCEEDED else None
    error = outcome.error or _NO_ERROR
    run.error_type = error["error_type"]
    run.error_message = error["error_message"]
    run.error_traceback = error["error_traceback"]
    run.next_retry_at = None
    if outcome.retry_delay is not None:
        run.next_retry_at = outcome.finished_at + outcome.retry_delay


def _after(outcome: Outcome) -> None:
    """The effects of one committed outcome beyond its own row."""
    run = outcome.run
    if outcome.status == RunStatus.SUCCEEDED:
        for effect in outcome.ctx.on_success:  # tasks it started
            effect()
    if outcome.retry_delay is not None:
        dispatch.schedule_retry_promotion(run.id, outcome.retry_delay)
    elif run.task_id and outcome.task_status is not None:
        fields: dict[str, Any] = {}
        if outcome.status == RunStatus.SUCCEEDED:
            fields["result"] = outcome.result
        elif outcome.error is not None:
            fields["error_type"] = outcome.error["error_type"]
            fields["error_message"] = outcome.error["error_message"]
        tasks.record_outcome(run.task_id, outcome.task_status, **fields)


def _trace_row(outcome: Outcome) -> RunTrace:
    document = outcome.trace or {}
    return RunTrace(
        run_id=outcome.run.id,
        data=document,
        span_count=document["span_count"],
        is_truncated=document["is_truncated"],
    )


class ErrorFields(TypedDict):
    error_type: str
    error_message: str
    error_traceback: str


_NO_ERROR: ErrorFields = {"error_type": "", "error_message": "", "error_traceback": ""}


def describe_error(exc: BaseException) -> ErrorFields:
    """The error columns of a run for an exception: bounded in size, storable as PostgreSQL
    text (no NUL characters, no lone surrogates), and never raising, whatever the exception's
    own __str__ does."""
    try:
        tb = "".join(traceback.format_exception(exc))
    except Exception:
        tb = f"{type_name(exc)}: {_message(exc)}\n(the traceback could not be formatted)"
    return {
        "error_type": storable_text(type_name(exc))[:300],
        "error_message": storable_text(_message(exc))[:MAX_ERROR_MESSAGE],
        "error_traceback": storable_text(tb)[-MAX_TRACEBACK:],
    }


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as broken:
        return f"<{type(exc).__name__}.__str__ raised {type(broken).__name__}>"
