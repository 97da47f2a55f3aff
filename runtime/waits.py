"""Durable waits in tasks: `ctx.sleep(seconds)` and `ctx.wait_for_event(type, match, timeout)`.

A wait does not hold a worker. It *suspends* the attempt: in one transaction the events the
task sent so far are committed, the wait is recorded (a TaskWait row), the task's run goes back
to `queued` held until the wait's time (Run.available_at, wait_reason sleep/event) with its
lease released, and the task shows `waiting`; then `Suspended` unwinds the task function. The
scheduler releases the hold when its time comes (runtime.holds.release_due), or at once when a
matching event arrives (resolve_events, every second), and a worker runs the task function again
from the top.

Replay rule: each wait call is identified by its order among the wait calls of one execution of
the task function ("#1", "#2", …) or by the `key=` it is given. A wait already resolved returns
at once what it resolved to (None for a sleep; the Event, or None after a timeout, for
wait_for_event); the first one still open suspends again. Work before a wait runs again on each
resumption unless it is guarded by a checkpoint (`ctx.restore()`); code that skips wait calls
when it restores (a loop resuming at its i-th round) must give its waits keys.
"""

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.utils import timezone

from hotapp.models import (
    Event,
    Run,
    RunStatus,
    Task,
    TaskStatus,
    TaskWait,
    WaitKind,
    WaitOutcome,
    WaitReason,
)
from runtime import context, dispatch
from runtime.events import persist_events
from runtime.exceptions import Cancelled, Suspended
from runtime.live import runs_changed
from runtime.payloads import check_json, validate_event_type
from runtime.transitions import transition

if TYPE_CHECKING:
    from runtime.tasks import TaskContext

logger = logging.getLogger("hot.waits")
BATCH = 500
# At most this many matching events are read to pick the first; a match so loose that more match
# takes the first of these (the wait is resolved by an event of its kind, if not the earliest).
MATCHES_READ = 1000
# The hold of a wait with no time limit: a run is claimable only with no available_at, so a
# wait for an event with no timeout is held until a date that never comes (shown as "no set
# time"); a matching event releases it.
FOREVER = datetime(9999, 12, 31, tzinfo=UTC)


def sleep(tctx: "TaskContext", seconds: float | timedelta, key: str | None = None) -> None:
    """Suspend the task for `seconds` without holding a worker (see the module's docstring)."""
    tctx.check_cancelled()
    if isinstance(seconds, bool) or not isinstance(seconds, int | float | timedelta):
        raise ValueError(f"ctx.sleep() takes seconds or a timedelta, not {seconds!r}")
    seconds = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
    if not seconds >= 0:  # also refuses NaN
        raise ValueError(f"ctx.sleep() takes a number of seconds >= 0, not {seconds!r}")
    wait_key = tctx.next_wait_key(key)
    wait = _find(tctx.task_id, wait_key, WaitKind.SLEEP, "")
    now = timezone.now()
    if wait is None:
        until = now + timedelta(seconds=seconds)
        if seconds == 0:  # recorded all the same, so that the later waits keep their numbers
            TaskWait.objects.create(
                task_id=tctx.task_id, key=wait_key, kind=WaitKind.SLEEP, run_id=tctx.run_id,
                until=until, created_at=now, resolved_at=now, outcome=WaitOutcome.WOKE,
            )  # fmt: skip
            return
        wait = TaskWait(
            task_id=tctx.task_id, key=wait_key, kind=WaitKind.SLEEP, run_id=tctx.run_id,
            until=until, created_at=now,
        )  # fmt: skip
        _suspend(tctx, wait, is_new=True)
    if wait.resolved_at is None:
        if wait.until is not None and wait.until > now:
            _suspend(tctx, wait, is_new=False)  # resumed early: suspended again
        else:
            _resolve(wait.id, now, WaitOutcome.WOKE)


def wait_for_event(
    tctx: "TaskContext",
    event_type: str,
    match: dict | None = None,
    timeout: float | timedelta | None = None,
    key: str | None = None,
) -> context.Event | None:
    """The first event of `event_type` whose data contains `match`, sent after the wait began;
    None if `timeout` passes first. The task is suspended meanwhile (see the module's docstring)."""
    tctx.check_cancelled()
    validate_event_type(event_type)
    if match is not None and not isinstance(match, dict):
        raise ValueError(f"match= takes a dict of what the event's data must contain: {match!r}")
    match = match or {}
    check_json(match, "match=")
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0
    ):
        raise ValueError(f"timeout= must be a number of seconds >= 0 or None: {timeout!r}")
    wait_key = tctx.next_wait_key(key)
    wait = _find(tctx.task_id, wait_key, WaitKind.EVENT, event_type)
    now = timezone.now()
    if wait is None:
        wait = TaskWait(
            task_id=tctx.task_id, key=wait_key, kind=WaitKind.EVENT, run_id=tctx.run_id,
            event_type=event_type, match=match, created_at=now,
            until=None if seconds is None else now + timedelta(seconds=seconds),
        )  # fmt: skip
        if seconds == 0:
            wait.save()  # resolved below, at once, by what is there already (nothing)
        else:
            _suspend(tctx, wait, is_new=True)
    if wait.resolved_at is None:
        found = find_match(wait)
        if found is not None:
            _resolve(wait.id, now, WaitOutcome.MATCHED, found)
        elif wait.until is not None and wait.until <= now:
            _resolve(wait.id, now, WaitOutcome.TIMED_OUT)
        else:
            _suspend(tctx, wait, is_new=False)
        # Whoever resolved it first (this call or the scheduler's matcher) decided its outcome.
        wait.refresh_from_db()
    if wait.outcome != WaitOutcome.MATCHED:
        return None
    row = Event.objects.filter(id=wait.event_id).values_list("id", "type", "data").first()
    if row is None:  # the event was purged since: its id is gone with it
        return context.Event(None, wait.event_type, None)
    return context.Event(*row)


def _find(task_id: uuid.UUID, key: str, kind: str, event_type: str) -> TaskWait | None:
    wait = TaskWait.objects.filter(task_id=task_id, key=key).first()
    if wait is not None and (wait.kind != kind or wait.event_type != event_type):
        # The code changed, or it does not call its waits in the same order on each run: the
        # recorded wait is used all the same (it is what happened), and the user is told.
        logger.warning(
            "task %s: wait %s was a %s%s when it was recorded and is now a %s%s; the "
            "recorded one stands (give waits whose order may change a key=)",
            task_id, key, wait.kind, f" for {wait.event_type}" if wait.event_type else "",
            kind, f" for {event_type}" if event_type else "",
            extra={"action": "wait_mismatch", "task_id": str(task_id), "key": key},
        )  # fmt: skip
    return wait


def _suspend(tctx: "TaskContext", wait: TaskWait, is_new: bool) -> None:
    """Commit the suspension of this attempt on `wait`, then unwind the task function; returns
    only if `wait` (an existing one) was resolved meanwhile."""
    now = timezone.now()
    hold = wait.until or FOREVER
    if tctx.deadline_at is not None:
        hold = min(hold, tctx.deadline_at)  # the task's timeout counts waiting time
    with transaction.atomic():
        # Locked: the lease keeper, a cancel or the sweeper cannot move the run meanwhile.
        mine = Run.objects.select_for_update().filter(
            id=tctx.run_id, status=RunStatus.RUNNING, claimed_by=tctx.claim_token
        )
        cancel_requested = mine.values_list("cancel_requested_at", flat=True)
        if not cancel_requested:
            # Not this attempt's any more (cancelled past its grace period, or recovered after
            # its lease lapsed): it must not record anything; its outcome is dropped as well.
            raise Suspended()
        if cancel_requested[0] is not None:
            raise Cancelled()
        if is_new:
            wait.save()
        elif not TaskWait.objects.select_for_update().filter(id=wait.id, resolved_at=None):
            # The matcher resolved it since it was read: go on instead. Locked otherwise, so
            # that a matcher resolving it now waits for this transaction and then finds the
            # run held, and releases it.
            return
        flush_outbox(tctx)
        reason = WaitReason.SLEEP if wait.kind == WaitKind.SLEEP else WaitReason.EVENT
        mine.update(
            status=RunStatus.QUEUED, available_at=hold, wait_reason=reason, claimed_by="",
            started_at=None, lease_expires_at=None, queued_at=now, updated_at=now,
        )  # fmt: skip
        Task.objects.filter(id=tctx.task_id, status=TaskStatus.RUNNING).update(
            status=TaskStatus.WAITING, updated_at=now
        )
    runs_changed()
    raise Suspended()


def flush_outbox(tctx: "TaskContext") -> None:
    """Commit what the attempt sent and started so far (inside the caller's transaction): a
    resumed task does not run the code before its checkpoint or wait again, so what that code
    sent must not wait for the task's success."""
    ctx = tctx.run_context
    if ctx.outbox:
        persist_events([(pending, ctx.run_id, ctx.stream_id) for pending in ctx.outbox])
        ctx.outbox.clear()
    effects, ctx.on_success[:] = list(ctx.on_success), []
    for effect in effects:
        effect()


def _resolve(wait_id: int, now: datetime, outcome: str, event_id: uuid.UUID | None = None) -> int:
    """The one conditional UPDATE that decides a wait's outcome: 1 if this call decided it."""
    return TaskWait.objects.filter(id=wait_id, resolved_at__isnull=True).update(
        resolved_at=now, outcome=outcome, event_id=event_id
    )


def find_match(wait: TaskWait) -> uuid.UUID | None:
    """The first event matching an event wait: of its type, its data containing its match,
    sent from when the wait began up to its timeout. Served by event_type_idx (type,
    created_at) and, for the match, event_data_gin (data @> %s) on PostgreSQL."""
    events = Event.objects.filter(type=wait.event_type, created_at__gte=wait.created_at)
    if wait.until is not None:
        events = events.filter(created_at__lte=wait.until)
    events = events.order_by("created_at", "id")
    if not wait.match:
        return events.values_list("id", flat=True).first()
    if connection.vendor == "postgresql":
        # Unordered, so that PostgreSQL finds the few matching rows by event_data_gin instead of
        # walking every event of the type in order (event_type_idx) until one matches: 60 ms a
        # wait at 100,000 events since it began, against well under 1 ms.
        found = events.filter(data__contains=wait.match).order_by().values_list("created_at", "id")
        first = min(found[:MATCHES_READ], default=None)
        return first[1] if first else None
    # SQLite (the embedded default) has no JSON containment: checked here, event by event.
    for event_id, data in events.values_list("id", "data").iterator():
        if contains(data, wait.match):
            return event_id
    return None


def contains(data: Any, match: Any) -> bool:
    """JSON containment as PostgreSQL's @> defines it: an object contains an object whose
    keys it has with contained values; an array contains an array whose every element some
    element of it contains; other values contain only an equal value."""
    if isinstance(match, dict):
        return isinstance(data, dict) and all(
            key in data and contains(data[key], value) for key, value in match.items()
        )
    if isinstance(match, list):
        return isinstance(data, list) and all(
            any(contains(item, wanted) for item in data) for wanted in match
        )
    if isinstance(match, bool) or isinstance(data, bool):
        return type(match) is type(data) and match == data
    return data == match


# The matcher's cursor, per process. Each pass reads the events of the awaited types sent
# since the last one (MARGIN behind it: transactions commit out of timestamp order) and matches
# them against the open waits here, so its cost follows the event rate, not how long the waits
# have been open (asking the database per wait took 1.9 s a pass for 500 waits with 100,000
# events of their type since they began). The first pass in a process, and one every
# FULL_PASS_SECONDS, asks per wait instead (find_match): it catches up after a restart and
# finds an event that committed more than MARGIN after its timestamp.
MARGIN = timedelta(seconds=2)
FULL_PASS_SECONDS = 300.0
SCAN_LIMIT = 5000  # events read by one pass; the rest on the next
_cursor: datetime | None = None
_next_full_pass = 0.0


def resolve_events(now: datetime | None = None) -> int:
    """Scheduler step (every second): resolve the open event waits that a sent event matches,
    and release their tasks' runs; returns how many. A wait's timeout needs nothing here: its
    run's hold ends then (runtime.holds.release_due) and the resumed task resolves it."""
    global _cursor, _next_full_pass
    now = now or timezone.now()
    if _cursor is None or time.monotonic() >= _next_full_pass:
        matches, reached = _match_each_wait(), now
        _next_full_pass = time.monotonic() + FULL_PASS_SECONDS
    else:
        matches, reached = _match_new_events(_cursor - MARGIN, now)
    _cursor = reached
    resolved = sum(1 for wait, event_id in matches if _resolve_and_release(wait, event_id, now))
    if resolved:
        runs_changed()
        logger.info("%d event waits matched", resolved, extra={"action": "resolve_waits"})
    return resolved


def _match_each_wait() -> list[tuple[TaskWait, uuid.UUID]]:
    """The full pass: the database looks for each open wait's first matching event."""
    open_waits = list(
        TaskWait.objects.filter(kind=WaitKind.EVENT, resolved_at__isnull=True).order_by(
            "created_at"
        )[:BATCH]
    )
    # One probe per event type: waits for a type with no event since they began cost no more.
    newest = {
        event_type: Event.objects.filter(type=event_type)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
        for event_type in {wait.event_type for wait in open_waits}
    }
    matches = []
    for wait in open_waits:
        latest = newest[wait.event_type]
        if latest is None or latest < wait.created_at:
            continue
        event_id = find_match(wait)
        if event_id is not None:
            matches.append((wait, event_id))
    return matches


def _match_new_events(
    since: datetime, now: datetime
) -> tuple[list[tuple[TaskWait, uuid.UUID]], datetime]:
    """The incremental pass: the events of awaited types sent after `since` (event_type_idx
    per type), each matched here against the open waits of its type, the earliest event
    winning. Returns the matches and how far it read."""
    open_waits = TaskWait.objects.filter(kind=WaitKind.EVENT, resolved_at__isnull=True)
    types = set(open_waits.values_list("event_type", flat=True).distinct())
    if not types:
        return [], now
    events = list(
        Event.objects.filter(type__in=types, created_at__gt=since, created_at__lte=now)
        .order_by("created_at", "id")
        .values_list("id", "type", "data", "created_at")[:SCAN_LIMIT]
    )
    if not events:
        return [], now
    reached = events[-1][3] if len(events) == SCAN_LIMIT else now
    candidates = {
        event_type: _Candidates(waits)
        for event_type, waits in _by_type(
            open_waits.filter(event_type__in={e[1] for e in events}).order_by("created_at")
        ).items()
    }
    matches = []
    matched: set[uuid.UUID] = set()
    for event_id, event_type, data, sent_at in events:
        for wait in candidates[event_type].for_data(data) if event_type in candidates else ():
            if wait.id in matched or sent_at < wait.created_at:
                continue
            if wait.until is not None and sent_at > wait.until:
                continue
            if contains(data, wait.match or {}):
                matches.append((wait, event_id))
                matched.add(wait.id)
    return matches, reached


def _by_type(waits: Any) -> dict[str, list[TaskWait]]:
    grouped: dict[str, list[TaskWait]] = {}
    for wait in waits:
        grouped.setdefault(wait.event_type, []).append(wait)
    return grouped


_SCALARS = (str, int, float, bool, type(None))


class _Candidates:
    """The open waits of one event type, looked up by the first top-level scalar of their
    match (`{"order": 7}`: the waits for order 7), so that an event is checked against the few
    waits it may match, not all of them (500 waits × 1,000 events took 650 ms checked pairwise).
    A wait whose match has no top-level scalar (empty, or only nested values) is checked
    against every event. A candidate is only that: contains() decides."""

    def __init__(self, waits: list[TaskWait]) -> None:
        self.by_key: dict[str, dict[Any, list[TaskWait]]] = {}
        self.always: list[TaskWait] = []
        for wait in waits:
            match = wait.match if isinstance(wait.match, dict) else {}
            key = next((k for k, v in match.items() if isinstance(v, _SCALARS)), None)
            if key is None:
                self.always.append(wait)
            else:
                self.by_key.setdefault(key, {}).setdefault(match[key], []).append(wait)

    def for_data(self, data: Any) -> list[TaskWait]:
        found = list(self.always)
        if isinstance(data, dict):
            for key, waits in self.by_key.items():
                value = data.get(key)
                if key in data and isinstance(value, _SCALARS):
                    found.extend(waits.get(value, ()))
        # Oldest wait first, as the full pass takes them.
        return sorted(found, key=lambda wait: wait.created_at) if len(found) > 1 else found


def _resolve_and_release(wait: TaskWait, event_id: uuid.UUID, now: datetime) -> bool:
    """Resolve `wait` with the event and release its task's held run, in one transaction;
    False if it was resolved meanwhile (its timeout, seen by the resumed task)."""
    with transaction.atomic():
        if not _resolve(wait.id, now, WaitOutcome.MATCHED, event_id):
            return False
        held = list(
            Run.objects.filter(
                task_id=wait.task_id, status=RunStatus.QUEUED, wait_reason=WaitReason.EVENT
            ).values_list("id", "trigger")
        )
        # The status again in the UPDATE: a run cancelled since the read stays as it is.
        transition(
            Run.objects.filter(id__in=[run_id for run_id, _ in held], status=RunStatus.QUEUED),
            now=now,
            available_at=None,
            wait_reason="",
            queued_at=now,
        )
        transaction.on_commit(lambda: dispatch.enqueue_by_queue(held))
    return True


def abandon(task_id: uuid.UUID, now: datetime) -> None:
    """The task ended: its open waits will never be resumed (called with its outcome)."""
    TaskWait.objects.filter(task_id=task_id, resolved_at__isnull=True).update(
        resolved_at=now, outcome=WaitOutcome.ABANDONED
    )
