"""Flow control in the database: claiming runs with a flow_key within their handler's limits,
letting the next held run go when one finishes, and debouncing.

Every worker claims through here, so the limits hold across processes and machines:

- claim_flow() claims for one flow-controlled function at a time, in a transaction that on
  PostgreSQL first takes a transaction-level advisory lock on the function. Two workers can
  then not both count a free slot: the second waits for the first's commit, and since each
  statement of a READ COMMITTED transaction reads a fresh snapshot, its count (taken after the
  lock) includes the first's claims. SQLite has one writer (transactions begin IMMEDIATE), so
  the transaction is the guard there.
- A run that does not fit is held (moved out of the ready set, so runs of other keys behind it
  are not blocked): for a rate limit until the window should have room (runtime.holds releases
  it then and the claim checks again); for a concurrency limit until a run of its key finishes,
  which releases the next held ones in its completion's transaction (free_slots), with a
  recheck time as a fallback for runs that end without a completion (a forced cancel, a worker
  lost for good).
- replace_debounced() cancels a key's run still held for its debounce when a later event for
  the key comes, under an advisory lock per key, so two senders at once leave one run.
"""

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from hotapp.models import Run, RunStatus, WaitReason
from runtime import registry
from runtime.live import runs_changed
from runtime.registry import Handler

# How many of a function's first ready runs one claim looks at: those that fit are claimed,
# those that do not are held, and the claim looks again (up to ROUNDS times) while it held some
# and has room: a key with a long backlog costs a few passes once, then stays out of the way.
CANDIDATES = 200
ROUNDS = 4
# A run held for a concurrency slot is let go by the run that frees it (free_slots); should
# that never come, its hold lapses after this long (times its place among the key's waiting
# runs over the limit, at most an hour) and the claim looks again.
RECHECK_SECONDS = 30.0
MAX_RECHECK_SECONDS = 3600.0

_turn = itertools.count()


def _table() -> str:
    return connection.ops.quote_name(Run._meta.db_table)


def _prep(name: str, value: Any) -> Any:
    return Run._meta.get_field(name).get_db_prep_value(value, connection)


def claim_flow(token: str, size: int) -> list[Run]:
    """Claim up to `size` ready runs of flow-controlled functions under `token`, within their
    limits; [] at once, with no query, when no handler of this process is flow-controlled."""
    handlers = registry.flow_limited()
    if not handlers:
        return []
    # One look for which functions have ready runs at all, before any lock: a worker whose
    # fast path runs dry asks this, and most of the time the answer is none.
    ready = _ready_functions([handler.name for handler in handlers])
    handlers = [handler for handler in handlers if handler.name in ready]
    if not handlers:
        return []
    # Each call starts at another function, so one busy function does not starve the others.
    start = next(_turn) % len(handlers)
    claimed: list[Run] = []
    for handler in handlers[start:] + handlers[:start]:
        if len(claimed) >= size:
            break
        claimed += _claim_function(handler, token, size - len(claimed))
    return claimed


def _ready_functions(names: list[str]) -> set[str]:
    # One probe of run_flow_ready_idx per function.
    row = "(%s::varchar)" if connection.vendor == "postgresql" else "(%s)"
    table = _table()
    sql = (
        f"SELECT v.column1 FROM (VALUES {', '.join([row] * len(names))}) AS v WHERE EXISTS ("
        f"SELECT 1 FROM {table} WHERE function = v.column1 AND status = %s "
        "AND available_at IS NULL AND flow_key IS NOT NULL)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*names, str(RunStatus.QUEUED)])
        return {name for (name,) in cursor.fetchall()}


def _claim_function(handler: Handler, token: str, size: int) -> list[Run]:
    claimed: list[Run] = []
    for _ in range(ROUNDS):
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"hot.flow:{handler.name}"]
                    )
            runs, held = _claim_round(handler, token, size - len(claimed))
        claimed += runs
        if not held or len(claimed) >= size:
            break
    claimed.sort(key=lambda run: (-run.priority, run.created_at, run.id))
    return claimed


def _claim_round(handler: Handler, token: str, size: int) -> tuple[list[Run], int]:
    """One look at a function's first ready runs, inside the locked transaction: claim those
    that fit, hold those that do not; returns (claimed runs, how many were held)."""
    flow = handler.flow
    now = timezone.now()
    rows = _candidates(handler, now)
    if not rows:
        return [], 0
    claim: list = []
    holds: list[tuple[Any, str, datetime]] = []
    keys: dict[str, dict[str, Any]] = {}
    for run_id, key, busy, started, oldest in rows:
        if len(claim) >= size:
            break
        k = keys.get(key)
        if k is None:
            k = keys[key] = {
                "slots": (flow.concurrency - busy) if flow.concurrency else math.inf,
                "starts": (flow.rate_count - started) if flow.rate_count else math.inf,
                "over_slots": 0,
                "over_rate": 0,
                "oldest": _as_datetime(oldest) or now,
            }
        if k["slots"] <= 0:
            k["over_slots"] += 1
            waves = math.ceil(k["over_slots"] / (flow.concurrency or 1))
            recheck = min(RECHECK_SECONDS * waves, MAX_RECHECK_SECONDS)
            holds.append((run_id, WaitReason.CONCURRENCY, now + timedelta(seconds=recheck)))
        elif k["starts"] <= 0:
            # The window has room again once its oldest start leaves it; the n-th run over
            # the limit waits for the n-th window (an estimate: the claim checks again).
            k["over_rate"] += 1
            waves = math.ceil(k["over_rate"] / (flow.rate_count or 1))
            due = k["oldest"] + timedelta(seconds=flow.rate_seconds * waves)
            holds.append((run_id, WaitReason.RATE_LIMIT, max(due, now)))
        else:
            k["slots"] -= 1
            k["starts"] -= 1
            claim.append(run_id)
    _hold(holds, now)
    return _claim_ids(claim, token), len(holds)


def _candidates(handler: Handler, now: datetime) -> list[tuple]:
    """The function's first ready runs in queue order, each with its key's running runs, its
    starts in the rate window and the oldest of those."""
    table = _table()
    with connection.cursor() as cursor:
        # Served by run_flow_ready_idx.
        cursor.execute(
            f"SELECT id, flow_key FROM {table} WHERE function = %s AND status = %s "
            "AND available_at IS NULL AND flow_key IS NOT NULL "
            "ORDER BY priority DESC, created_at, id LIMIT %s",
            [handler.name, str(RunStatus.QUEUED), CANDIDATES],
        )
        rows = cursor.fetchall()
    stats = _key_stats(handler, sorted({key for _, key in rows}), now)
    return [(run_id, key, *stats[key]) for run_id, key in rows]


def _key_stats(handler: Handler, keys: list[str], now: datetime) -> dict[str, tuple]:
    """(running runs, starts in the rate window, oldest of them) per key, in one statement of
    index probes per key: correlated subqueries, so the plan does not hang on statistics (a
    join planned for one row once re-read every start in the window per candidate)."""
    flow, table = handler.flow, _table()
    if not keys or not (flow.concurrency or flow.rate_count):
        return dict.fromkeys(keys, (0, 0, None))
    row = "(%s::text)" if connection.vendor == "postgresql" else "(%s)"
    columns, params = [], []
    if flow.concurrency:
        # Served by run_flow_running_idx.
        columns.append(
            f"(SELECT COUNT(*) FROM {table} r WHERE r.function = %s "
            "AND r.flow_key = v.column1 AND r.status = %s)"
        )
        params += [handler.name, str(RunStatus.RUNNING)]
    else:
        columns.append("0")
    if flow.rate_count:
        # Served by run_flow_started_idx: a sliding window over started_at, so every start
        # counts, whatever became of the run (a failed attempt's retry is a start of its own).
        since = _prep("started_at", now - timedelta(seconds=flow.rate_seconds))
        for aggregate in ("COUNT(*)", "MIN(r.started_at)"):
            columns.append(
                f"(SELECT {aggregate} FROM {table} r WHERE r.function = %s "
                "AND r.flow_key = v.column1 AND r.started_at > %s)"
            )
            params += [handler.name, since]
    else:
        columns += ["0", "NULL"]
    sql = (
        f"SELECT v.column1, {', '.join(columns)} FROM (VALUES {', '.join([row] * len(keys))}) AS v"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *keys])
        return {key: tuple(values) for key, *values in cursor.fetchall()}


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = parse_datetime(str(value))  # SQLite hands back text
    if parsed is not None and timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _claim_ids(ids: list, token: str) -> list[Run]:
    # Imported here: the executor imports this module.
    from runtime.executor import _CLAIM_SET, _claim_params, _claimed

    if not ids:
        return []
    marks = ", ".join(["%s"] * len(ids))
    sql = (
        f"UPDATE {_table()} SET {_CLAIM_SET}, wait_reason = '' "
        f"WHERE status = %s AND available_at IS NULL AND id IN ({marks}) RETURNING *"
    )
    return _claimed(sql, [*_claim_params(token), str(RunStatus.QUEUED), *ids])


def _hold(holds: Sequence[tuple[Any, str, datetime]], now: datetime) -> None:
    """Hold runs that did not fit, each with its reason and time, in one UPDATE."""
    if not holds:
        return
    cast = connection.vendor == "postgresql"
    row = "(%s::uuid, %s::varchar, %s::timestamptz)" if cast else "(%s, %s, %s)"
    params: list[Any] = [_prep("updated_at", now)]
    for run_id, reason, until in holds:
        params += [run_id, str(reason), _prep("available_at", until)]
    table = _table()
    sql = (
        f"UPDATE {table} SET wait_reason = v.column2, available_at = v.column3, updated_at = %s "
        f"FROM (VALUES {', '.join([row] * len(holds))}) AS v "
        f"WHERE {table}.id = v.column1 AND {table}.status = %s AND {table}.available_at IS NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, str(RunStatus.QUEUED)])
    runs_changed()


def free_slots(runs: Sequence[Run]) -> None:
    """Inside the transaction that ends `runs` (executor.complete): for each finished run of a
    concurrency-limited function, let the first run held for its key's slot go. Nothing at all
    for runs without a flow_key (the fast path).

    No doorbell: the worker committing this goes on draining (executor.drain), so its next
    claim takes the run at once; a worker that stops rings on its way out, and should it die
    the sweeper rings for the run (its queued_at is now)."""
    ended = Counter(
        (run.function, run.flow_key)
        for run in runs
        if run.flow_key is not None and run.status != RunStatus.RUNNING
    )
    if not ended:
        return
    table = _table()
    lock = (
        " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    )
    now = _prep("updated_at", timezone.now())
    reason, queued = str(WaitReason.CONCURRENCY), str(RunStatus.QUEUED)
    released: list = []
    with connection.cursor() as cursor:
        for (function, key), count in sorted(ended.items()):
            handler = registry.handler_named(function)
            if handler is not None and not handler.flow.concurrency:
                continue
            # Served by run_flow_queued_idx.
            cursor.execute(
                f"UPDATE {table} SET available_at = NULL, wait_reason = '', queued_at = %s, "
                "updated_at = %s WHERE status = %s AND wait_reason = %s AND id IN ("
                f"SELECT id FROM {table} WHERE function = %s AND flow_key = %s AND status = %s "
                f"AND wait_reason = %s ORDER BY priority DESC, created_at, id LIMIT %s{lock}) "
                "RETURNING id",
                [now, now, queued, reason, function, key, queued, reason, count],
            )
            released += [Run._meta.pk.to_python(value) for (value,) in cursor.fetchall()]
    if released:
        runs_changed()


def replace_debounced(runs: Sequence[Run]) -> None:
    """Before new runs are inserted (same transaction): each debounced new run replaces its
    key's run still held for debounce, which is cancelled saying so. Of several new runs of one
    key in the same batch, the last one stays."""
    latest: dict[tuple[str, str], Run] = {}
    for run in runs:
        if run.wait_reason != WaitReason.DEBOUNCE:
            continue
        assert run.flow_key is not None
        earlier = latest.get((run.function, run.flow_key))
        if earlier is not None:
            _debounced(earlier, run.event_id)
        latest[(run.function, run.flow_key)] = run
    if not latest:
        return
    keys = sorted(latest)
    table = _table()
    now = timezone.now()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # In a fixed order, so that two senders of the same keys never wait in a cycle.
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(k)) FROM "
                "(SELECT unnest(%s::text[]) AS k ORDER BY 1) AS ordered",
                [[f"hot.debounce:{function}\n{key}" for function, key in keys]],
            )
        cast = connection.vendor == "postgresql"
        row = "(%s::varchar, %s::text, %s::text)" if cast else "(%s, %s, %s)"
        params: list[Any] = [
            str(RunStatus.CANCELLED),
            _prep("finished_at", now),
            _prep("updated_at", now),
            "Debounced",
        ]
        for function, key in keys:
            params += [
                function,
                key,
                f"Replaced by a later event, {latest[function, key].event_id}",
            ]
        # Served by run_flow_queued_idx. The status check makes a run claimed meanwhile (its
        # debounce over) stay: it runs, and so does the new one.
        cursor.execute(
            f"UPDATE {table} SET status = %s, finished_at = %s, updated_at = %s, "
            "available_at = NULL, wait_reason = '', error_type = %s, error_message = v.column3 "
            f"FROM (VALUES {', '.join([row] * len(keys))}) AS v WHERE {table}.function = v.column1 "
            f"AND {table}.flow_key = v.column2 AND {table}.status = %s "
            f"AND {table}.wait_reason = %s",
            [*params, str(RunStatus.QUEUED), str(WaitReason.DEBOUNCE)],
        )
        if cursor.rowcount:
            runs_changed()


def _debounced(run: Run, by_event: Any) -> None:
    """A new run replaced in its own batch: inserted cancelled."""
    run.status = RunStatus.CANCELLED
    run.finished_at = run.updated_at
    run.available_at, run.wait_reason = None, ""
    run.error_type = "Debounced"
    run.error_message = f"Replaced by a later event, {by_event}"
