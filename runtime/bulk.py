"""Bulk actions: retry or cancel every run matching a runs-list filter.

    count = preview("retry", {"status": ["failed"], "function": "app.handlers.charge"})
    operation = start_bulk("retry", params, Actor(request.user, via=Via.PAGE))  # a worker does it

"Matching" means what the runs page lists for the same query parameters: the filter goes through
the page's own form and queryset (hotapp.filters, RunQuerySet.filtered). Of those runs an action
takes the ones it fits: a retry the failed runs not retried already, a cancel the unfinished
ones (RunQuerySet.retryable / cancellable).

An operation is a BulkOperation row worked through in batches of BATCH_SIZE runs, newest first,
by a keyset cursor on (created_at, id) stored with its progress: each batch acts on its runs and
moves the cursor in one transaction, so a run is never handled twice by one operation, and runs
created after the operation (the retries it makes among them) are not its business. Each run's
fitness is checked again by the statement that acts on it (the retry's unique attempt, the
cancel's conditional UPDATE), so a run another operation, a person or a worker changed meanwhile
is skipped, never acted on twice. The executor holds a lease like a run's; the sweeper hands a
lapsed one to another worker, and a batch commits only while its executor still holds the claim.
"""

import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

from django.db import InterfaceError, OperationalError, transaction
from django.db.models import DateTimeField, F, Q, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from hotapp.conf import hot_settings
from hotapp.filters import describe_run_filter, run_filter_form, run_filter_params
from hotapp.models import (
    AuditAction,
    AuditEntry,
    BulkKind,
    BulkOperation,
    BulkStatus,
    Run,
    RunStatus,
)
from runtime import dispatch, retry_attempts
from runtime.audit import CODE, Actor
from runtime.db import with_db_retry
from runtime.exceptions import HotError, type_name
from runtime.transitions import transition

logger = logging.getLogger("hot.bulk")

BATCH_SIZE = 200  # runs acted on per transaction
# A worker answering a doorbell works this long, then hands the operation on with a new
# doorbell, so a million-run operation does not hold one worker (or its warm shutdown).
SLICE_SECONDS = 5.0
UNFINISHED = (BulkStatus.PENDING, BulkStatus.RUNNING)
WHAT = {BulkKind.RETRY: "failed runs", BulkKind.CANCEL: "unfinished runs"}


class BulkError(HotError, ValueError):
    """The bulk action cannot be done as asked."""


class _ClaimLost(Exception):
    """The operation was stopped, or another executor took it over: this batch must not count."""


class Outcome(NamedTuple):
    done: int
    skipped: int
    failed: int
    error: str


def kind_of(kind: str) -> BulkKind:
    try:
        return BulkKind(kind)
    except ValueError:
        raise BulkError(f"No bulk action {kind!r}; use retry or cancel") from None


def matching(kind: str, params: Mapping) -> Any:
    """The runs `kind` would act on: the runs page's filter, narrowed to those the action fits.
    Raises BulkError with the page's messages for a malformed filter."""
    form = run_filter_form(run_filter_params(params))
    if not form.is_valid():
        raise BulkError("; ".join(form.error_messages()))
    runs = Run.objects.filtered(form.cleaned_data)
    return runs.retryable() if kind_of(kind) == BulkKind.RETRY else runs.cancellable()


def preview(kind: str, params: Mapping) -> int:
    """The dry run: how many runs `kind` would act on now (an exact COUNT over the filter)."""
    return matching(kind, params).count()


def describe(kind: str, count: int, params: Mapping) -> str:
    """`This will retry 1,234 failed runs matching: status=failed, function=…`."""
    kind = kind_of(kind)
    return (
        f"This will {kind.value} {count:,} {WHAT[kind]} matching: "
        f"{describe_run_filter(run_filter_params(params))}"
    )


def start_bulk(
    kind: str,
    params: Mapping,
    actor: Actor | None = None,
    *,
    ring: bool = True,
) -> BulkOperation:
    """Record an operation over the runs matching `params` now (its total is preview()'s count)
    and, with `ring`, ask a worker to do it; without, call execute() yourself (`hot bulk`)."""
    kind = kind_of(kind)
    params = run_filter_params(params)
    now = timezone.now()
    total = matching(kind, params).filter(created_at__lte=now).count()
    actor = actor or CODE
    user = actor.user if actor.user is not None and actor.user.is_authenticated else None
    with transaction.atomic():
        operation = BulkOperation.objects.create(
            kind=kind,
            filter=params,
            created_by=user,
            created_by_name=actor.username,
            via=actor.via,
            total=total,
            created_at=now,
            updated_at=now,
            # Its doorbell's grace: past it, the sweeper rings again.
            lease_expires_at=now + _requeue_after(),
        )
        if ring:
            _ring(operation.id)
    logger.info(
        "bulk %s of %d runs created",
        kind.value,
        total,
        extra={"action": "bulk_start", "operation_id": str(operation.id)},
    )
    return operation


def stop_bulk(operation_id: str | uuid.UUID) -> bool:
    """Stop an unfinished operation; the batch in flight is rolled back, those before stay done.
    False if it had finished already."""
    now = timezone.now()
    return bool(
        BulkOperation.objects.filter(id=operation_id, status__in=UNFINISHED).update(
            status=BulkStatus.CANCELLED,
            finished_at=now,
            updated_at=now,
            claimed_by="",
            lease_expires_at=None,
        )
    )


def execute(
    operation_id: str | uuid.UUID,
    *,
    batch_size: int = BATCH_SIZE,
    slice_seconds: float | None = None,
    on_progress: Callable[[BulkOperation], None] | None = None,
) -> BulkOperation | None:
    """Claim the operation and work through its runs in batches until none is left (or, with
    `slice_seconds`, that long; then hand it on with a new doorbell). Returns the operation as
    it stands, or None if it was not claimable (finished, or another executor holds it).
    `on_progress` gets the operation after every committed batch."""
    token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    operation = with_db_retry(partial(_claim, operation_id, token), "bulk claim")
    if operation is None:
        return None
    deadline = time.monotonic() + slice_seconds if slice_seconds else None
    cursor = None
    if operation.cursor_id is not None:
        cursor = (operation.cursor_created_at, operation.cursor_id)
    try:
        runs = matching(operation.kind, operation.filter).filter(
            created_at__lte=operation.created_at
        )
        while True:
            if deadline is not None and time.monotonic() > deadline:
                _hand_on(operation.id, token)
                break
            cursor = with_db_retry(
                partial(_batch, operation, runs, cursor, batch_size, token), "bulk batch"
            )
            if cursor is None:
                _finish(operation.id, token)
                break
            if on_progress is not None:
                on_progress(BulkOperation.objects.get(id=operation.id))
    except _ClaimLost:
        pass  # stopped, or taken over by another executor: its state is theirs to show
    except Exception as exc:
        logger.exception(
            "bulk operation failed",
            extra={"action": "bulk_failed", "operation_id": str(operation.id)},
        )
        _end(operation.id, token, BulkStatus.FAILED, last_error=f"{type_name(exc)}: {exc}")
    finally:
        dispatch.flush()  # the new attempts' doorbells are out before a worker's next task
    return BulkOperation.objects.get(id=operation.id)


def _claim(operation_id: str | uuid.UUID, token: str) -> BulkOperation | None:
    """Take the operation if nobody holds it: one conditional UPDATE, so of two doorbells (or a
    doorbell and the sweeper's) only one executor wins."""
    now = timezone.now()
    claimed = (
        BulkOperation.objects.filter(id=operation_id, status__in=UNFINISHED)
        .filter(Q(claimed_by="") | Q(lease_expires_at__lt=now))
        .update(
            status=BulkStatus.RUNNING,
            claimed_by=token,
            lease_expires_at=now + _lease(),
            started_at=Coalesce(F("started_at"), Value(now, output_field=DateTimeField())),
            updated_at=now,
        )
    )
    return BulkOperation.objects.get(id=operation_id) if claimed else None


def _batch(
    operation: BulkOperation, runs: Any, cursor: tuple | None, size: int, token: str
) -> tuple[datetime, uuid.UUID] | None:
    """One transaction: the next `size` runs after `cursor`, acted on, and the progress and
    cursor moved; the new cursor, or None when no run is left. Safe to repeat after a failure
    (with_db_retry): nothing of it stays unless all of it commits."""
    with transaction.atomic():
        page = runs.newest_first()
        if cursor is not None:
            page = page.older_than(cursor)
        keys = list(page.values_list("created_at", "id")[:size])
        if not keys:
            return None
        ids = [run_id for _, run_id in keys]
        outcome = _act(
            partial(_retry if operation.kind == BulkKind.RETRY else _cancel, operation), ids
        )
        now = timezone.now()
        errors = {"last_error": outcome.error} if outcome.error else {}
        moved = BulkOperation.objects.filter(
            id=operation.id, status=BulkStatus.RUNNING, claimed_by=token
        ).update(
            done=F("done") + outcome.done,
            skipped=F("skipped") + outcome.skipped,
            failed=F("failed") + outcome.failed,
            cursor_created_at=keys[-1][0],
            cursor_id=keys[-1][1],
            lease_expires_at=now + _lease(),
            updated_at=now,
            **errors,
        )
        if not moved:
            raise _ClaimLost  # roll this batch back: its runs are someone else's now
    return keys[-1]


def _act(action: Callable[[list[uuid.UUID]], Outcome], ids: list[uuid.UUID]) -> Outcome:
    """The action on a batch, in a savepoint; if it raises, on each run alone, so that one run
    the action cannot handle fails by itself and the others are still done."""
    try:
        with transaction.atomic():
            return action(ids)
    except (OperationalError, InterfaceError):
        raise  # the database is away: with_db_retry tries the whole batch again
    except Exception:
        logger.warning("bulk batch failed; acting on its runs one by one", exc_info=True)
    done = skipped = failed = 0
    error = ""
    for run_id in ids:
        try:
            with transaction.atomic():
                one = action([run_id])
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:
            failed += 1
            error = f"run {run_id}: {type_name(exc)}: {exc}"
        else:
            done, skipped = done + one.done, skipped + one.skipped
    return Outcome(done, skipped, failed, error)


def _retry(operation: BulkOperation, ids: list[uuid.UUID]) -> Outcome:
    """Retry the runs that are still failed, not retried yet and no task's attempt, as
    retry_run does: the check is made on the locked rows (retry_attempts.next_attempts), so a
    run that someone retried meanwhile (another operation, a person, a retry promotion) is
    skipped."""
    runs = Run.objects.filter(id__in=ids, task__isnull=True)
    retried = retry_attempts.next_attempts(runs)
    _record(operation, AuditAction.RETRY, retried)
    return Outcome(len(retried), len(ids) - len(retried), 0, "")


def _cancel(operation: BulkOperation, ids: list[uuid.UUID]) -> Outcome:
    """Cancel runs as cancel_run does, a batch per statement: each UPDATE matches only rows
    still in the state it changes, so a run that finished meanwhile is skipped."""
    now = timezone.now()
    unstarted = [RunStatus.QUEUED, RunStatus.PENDING_RETRY]

    def cancel_unstarted() -> int:
        return transition(
            Run.objects.filter(id__in=ids, status__in=unstarted),
            now=now,
            status=RunStatus.CANCELLED,
            finished_at=now,
        )

    done = cancel_unstarted()
    done += transition(
        Run.objects.filter(id__in=ids, status=RunStatus.RUNNING, cancel_requested_at__isnull=True),
        now=now,
        cancel_requested_at=now,
    )
    # Lease recovery may have put a running run back in the queue between the two UPDATEs (a
    # run with a cancel request is never put back, so nothing is counted twice).
    done += cancel_unstarted()
    # The runs these UPDATEs changed carry this transaction's moment.
    acted = Run.objects.filter(id__in=ids).filter(
        Q(status=RunStatus.CANCELLED, finished_at=now) | Q(cancel_requested_at=now)
    )
    _record(
        operation,
        AuditAction.CANCEL,
        [(run_id, None) for run_id in acted.values_list("id", flat=True)],
    )
    return Outcome(done, len(ids) - done, 0, "")


def _record(
    # An AuditAction: Django's labelled choices, which mypy sees as tuples (as in runtime.audit).
    operation: BulkOperation,
    action: Any,
    acted: Sequence[tuple[uuid.UUID, uuid.UUID | None]],
) -> None:
    """Each run a batch acted on gets its audit entry, as one by one (a run's page says who
    retried or cancelled it), in the batch's transaction and one INSERT."""
    AuditEntry.objects.bulk_create(
        AuditEntry(
            action=action,
            run_id=run_id,
            result_run_id=result_id,
            user_id=operation.created_by_id,
            username=operation.created_by_name,
            via=operation.via,
        )
        for run_id, result_id in acted
    )


def _finish(operation_id: uuid.UUID, token: str) -> None:
    # Runs counted at the start that stopped fitting before their batch was read were never
    # seen: they are skipped too.
    _end(
        operation_id,
        token,
        BulkStatus.DONE,
        skipped=Greatest(F("skipped"), F("total") - F("done") - F("failed")),
    )


def _end(operation_id: uuid.UUID, token: str, status: str, **fields: Any) -> None:
    now = timezone.now()
    BulkOperation.objects.filter(
        id=operation_id, status=BulkStatus.RUNNING, claimed_by=token
    ).update(
        status=status,
        finished_at=now,
        updated_at=now,
        claimed_by="",
        lease_expires_at=None,
        **fields,
    )
    logger.info(
        "bulk operation %s",
        status,
        extra={"action": "bulk_end", "operation_id": str(operation_id)},
    )


def _hand_on(operation_id: uuid.UUID, token: str) -> None:
    """End this executor's slice: free the claim and ring for the next one."""
    now = timezone.now()
    if BulkOperation.objects.filter(
        id=operation_id, status=BulkStatus.RUNNING, claimed_by=token
    ).update(claimed_by="", lease_expires_at=now + _requeue_after(), updated_at=now):
        _ring(operation_id)


def resume_stalled(now: datetime) -> int:
    """The sweeper's step: ring again for unfinished operations whose lease lapsed (their
    worker died, or their doorbell was lost). Their claim is freed and a new grace given in one
    conditional UPDATE, so each lapse is rung for once however many sweepers run."""
    stalled = list(
        BulkOperation.objects.filter(status__in=UNFINISHED, lease_expires_at__lt=now)
        .order_by("lease_expires_at")
        .values_list("id", "lease_expires_at")[:100]
    )
    rung = 0
    for operation_id, lease_expires_at in stalled:
        if BulkOperation.objects.filter(
            id=operation_id, status__in=UNFINISHED, lease_expires_at=lease_expires_at
        ).update(claimed_by="", lease_expires_at=now + _requeue_after(), updated_at=now):
            _ring(operation_id)
            rung += 1
    if rung:
        logger.warning("rang again for %d stalled bulk operations", rung)
    return rung


def _ring(operation_id: uuid.UUID) -> None:
    """Ask a worker to work on the operation once the current transaction commits; a lost
    message is found again by the sweeper (resume_stalled)."""
    dispatch.send_on_commit(
        "hot.run_bulk",
        (str(operation_id),),
        "could not ring for a bulk operation; the sweeper will",
        {"action": "bulk_ring_failed", "operation_id": str(operation_id)},
    )


def _lease() -> timedelta:
    return timedelta(seconds=hot_settings()["RUN_LEASE_SECONDS"])


def _requeue_after() -> timedelta:
    return timedelta(seconds=hot_settings()["REQUEUE_AFTER_SECONDS"])
