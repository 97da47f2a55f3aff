"""Retention: finished runs, finished tasks and events whose runs are gone are purged once they
are older than their function's policy (`retention_days=` on @on_event, @on_schedule, @task)
or HOT["RETENTION_DAYS"] (30; 0 or None keeps everything).

What goes, and when (age is counted from `finished_at`):
- A retry chain (a first attempt and its retries) goes whole, once every attempt of it finished
  before the cutoff: never while any attempt is queued, running or pending a retry (the chain
  is one unit because `origin_run` CASCADEs from the first attempt). With each run go its trace
  and audit entries; rows that point at it by SET NULL (events it sent, reruns of it, tasks it
  started, checkpoints and messages naming it) stay, unlinked.
- A task goes once it is finished (completed, failed, timed out, cancelled) before the cutoff of
  its name and none of its attempts is unfinished, with its attempts, checkpoints, messages and
  audit entries.
- An event goes in the same transaction as the last of its runs; an event that never had a run
  (no handler subscribed) after the global cutoff.

Work is bounded: each batch is its own short transaction, found by keyset on an index (per
function: `run_function_idx`; per task name: `task_name_idx`; unhandled events:
`event_unhandled_idx`), and a pass runs at most `max_batches` of them, taking one batch per
function in turn so that one busy function does not starve the others.
"""

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from hotapp.conf import hot_settings
from hotapp.models import (
    TASK_TERMINAL_STATUSES,
    TERMINAL_STATUSES,
    AlertDelivery,
    DeliveryStatus,
    Event,
    Run,
    Task,
    TaskWait,
)
from runtime import registry
from runtime.db import with_db_retry

logger = logging.getLogger("hot.retention")


def _in(values: tuple | list) -> str:
    return ", ".join(["%s"] * len(values))


_TERMINAL = tuple(sorted(TERMINAL_STATUSES))
_TASK_TERMINAL = tuple(sorted(TASK_TERMINAL_STATUSES))


@dataclass
class Purged:
    """What one purge (or its dry run) removed."""

    chains: int = 0  #: retry chains (a run that was never retried is a chain of one)
    runs: int = 0  #: runs, every attempt of those chains and the attempts of purged tasks
    tasks: int = 0
    events: int = 0
    alerts: int = 0  #: alert deliveries that ended (sent, failed, suppressed)
    batches: int = 0
    is_complete: bool = True  #: False: the pass stopped at max_batches with work left

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        more = "" if self.is_complete else "; more is due, left for the next pass"
        return (
            f"{self.runs} runs ({self.chains} chains), {self.tasks} tasks, {self.events} events, "
            f"{self.alerts} alert deliveries in {self.batches} batches{more}"
        )


def cutoff(days: float | None, now: datetime) -> datetime | None:
    """The moment before which finished rows go; None: keep forever."""
    return now - timedelta(days=days) if days else None


def policy_days(name: str) -> float | None:
    """The retention of a function's runs: its handler's own, else the global default."""
    handler = registry.handler_named(name)
    if handler is not None and handler.retention_days is not None:
        return handler.retention_days
    return hot_settings()["RETENTION_DAYS"]


def purge(
    now: datetime | None = None,
    *,
    batch: int | None = None,
    max_batches: int | None = None,
    dry_run: bool = False,
) -> Purged:
    """Delete (or, with `dry_run`, count) what the retention policies let go, in batches of at
    most `batch` chains, tasks or events (HOT["PURGE_BATCH"]), at most `max_batches` of them
    (None: until done). Never touches an unfinished run or task."""
    settings = hot_settings()
    now = now or timezone.now()
    batch = batch or settings["PURGE_BATCH"]
    purged = Purged()
    sources: list[Iterator[None]] = []
    for name in _distinct("hotapp_run", "function"):
        limit = cutoff(policy_days(name), now)
        if limit is not None:
            sources.append(_chains(name, limit, batch, dry_run, purged))
    for name in _distinct("hotapp_task", "name"):
        limit = cutoff(policy_days(name), now)
        if limit is not None:
            sources.append(_tasks(name, limit, batch, dry_run, purged))
    limit = cutoff(settings["RETENTION_DAYS"], now)
    if limit is not None:
        sources.append(_unhandled_events(limit, batch, dry_run, purged))
        sources.append(_alert_deliveries(limit, batch, dry_run, purged))
    # One batch of each source in turn; a source is done when a batch finds nothing more.
    while sources:
        for source in list(sources):
            if max_batches is not None and purged.batches >= max_batches:
                purged.is_complete = False
                return _logged(purged, dry_run)
            if next(source, StopIteration) is StopIteration:
                sources.remove(source)
    return _logged(purged, dry_run)


def _logged(purged: Purged, dry_run: bool) -> Purged:
    if purged.runs or purged.tasks or purged.events or purged.alerts or not purged.is_complete:
        logger.info(
            "%s %s",
            "purge (dry run) would delete" if dry_run else "purged",
            purged,
            extra={"action": "purge", **purged.as_dict(), "dry_run": dry_run},
        )
    return purged


DISTINCT_SQL = """
    WITH RECURSIVE names(name) AS (
        SELECT MIN({1}) FROM {0}
        UNION ALL
        SELECT (SELECT MIN({1}) FROM {0} WHERE {1} > names.name)
        FROM names WHERE names.name IS NOT NULL
    )
    SELECT name FROM names WHERE name IS NOT NULL
"""


def _distinct(table: str, column: str) -> list[str]:
    """Every distinct value of an indexed column, by a loose index scan: one index probe per
    value (`WHERE column > previous ORDER BY column LIMIT 1`), not a scan of every row."""
    with connection.cursor() as cursor:
        cursor.execute(DISTINCT_SQL.format(table, column))
        return [row[0] for row in cursor.fetchall()]


def _lock() -> str:
    # Another purger (a second scheduler) skips the rows this one holds rather than waiting;
    # the lock on a chain's first attempt also makes a new attempt of the chain (whose foreign
    # key check needs that row) wait until the chain is gone, then fail.
    return (
        " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    )


# A chain's first attempt whose whole chain finished before the cutoff. Walked by
# run_function_idx (function, created_at, id), oldest first: a run finishes after it is created,
# so created_at < cutoff holds for every row that qualifies. The retries come from the
# origin_run_id index.
CHAINS_SQL = """
    SELECT h.id, h.created_at FROM hotapp_run h
    WHERE h.function = %s AND h.created_at < %s {after}
      AND h.origin_run_id IS NULL AND h.task_id IS NULL
      AND h.status IN {terminal} AND COALESCE(h.finished_at, h.created_at) < %s
      AND NOT EXISTS (
        SELECT 1 FROM hotapp_run a WHERE a.origin_run_id = h.id
          AND (a.status NOT IN {terminal} OR COALESCE(a.finished_at, a.created_at) >= %s)
      )
    ORDER BY h.created_at, h.id
    LIMIT %s
"""
_IN = {"terminal": f"({_in(_TERMINAL)})", "task_terminal": f"({_in(_TASK_TERMINAL)})"}
CHAINS_SQL = CHAINS_SQL.replace("{terminal}", _IN["terminal"])


def _chains(
    function: str, limit: datetime, batch: int, dry_run: bool, purged: Purged
) -> Iterator[None]:
    when = connection.ops.adapt_datetimefield_value(limit)

    def purge_batch(rows: list[tuple]) -> None:
        heads = [row[0] for row in rows]
        run_ids = heads + list(
            Run.objects.filter(origin_run_id__in=heads).values_list("id", flat=True)
        )
        purged.chains += len(heads)
        purged.runs += len(run_ids)
        purged.events += _delete_runs(run_ids, dry_run)

    return _keyset_batches(
        CHAINS_SQL,
        "h",
        lambda keyset: [function, when, *keyset, *_TERMINAL, when, *_TERMINAL, when, batch],
        purge_batch,
        dry_run,
        purged,
    )


def _keyset_batches(
    sql: str,
    alias: str,
    params: Callable[[list], list],
    purge_batch: Callable[[list[tuple]], None],
    dry_run: bool,
    purged: Purged,
) -> Iterator[None]:
    """Walk the rows `sql` selects (id, created_at), oldest first by keyset, a batch (its
    LIMIT) at a time, each batch in its own transaction with its rows locked (SKIP LOCKED)
    unless this is a dry run; `purge_batch` deletes (or counts) one. Yields after each batch
    that found rows, so that purge() can take the sources in turn."""
    after: tuple[Any, Any] | None = None
    while True:

        def one_batch(after: tuple[Any, Any] | None = after) -> tuple[Any, Any] | None:
            with transaction.atomic():
                query, keyset = _keyset(sql, after, alias)
                with connection.cursor() as cursor:
                    cursor.execute(query + ("" if dry_run else _lock()), params(keyset))
                    rows = cursor.fetchall()
                if not rows:
                    return None
                purge_batch(rows)
                return (rows[-1][1], rows[-1][0])

        reached = with_db_retry(one_batch, "purge")
        if reached is None:
            return
        purged.batches += 1  # only batches that found rows count against the budget
        after = reached
        yield None


def _delete_runs(run_ids: list, dry_run: bool) -> int:
    """Delete runs (with what CASCADEs from them) and then their events that have no run left;
    returns how many events went (or would go)."""
    event_ids = list(
        Run.objects.filter(id__in=run_ids, event_id__isnull=False)
        .values_list("event_id", flat=True)
        .distinct()
    )
    if dry_run:
        # Would go: events none of whose runs stays.
        staying = Run.objects.filter(event_id__in=event_ids).exclude(id__in=run_ids)
        return (
            Event.objects.filter(id__in=event_ids)
            .exclude(id__in=staying.values("event_id"))
            .count()
        )
    # The ORM's delete follows every relation to Run, including ones added later: CASCADE
    # (traces, audit entries, retries) and SET NULL (sent events, reruns, started tasks,
    # checkpoints, messages, audit entries' result runs).
    Run.objects.filter(id__in=run_ids).only("id").delete()
    return _delete_orphan_events(event_ids)


def _delete_orphan_events(event_ids: list) -> int:
    if not event_ids:
        return 0
    event_ids = [Event._meta.pk.get_db_prep_value(value, connection) for value in event_ids]
    # One statement, so a run inserted for one of these events meanwhile (a rerun) keeps it:
    # and if it commits between this statement's snapshot and its end, the foreign key check
    # fails this batch rather than leave the run without its event.
    with connection.cursor() as cursor:
        # A task's wait that matched one of them keeps its outcome, without the event (its
        # SET NULL, which a raw DELETE does not apply). Rare: served by the FK's index.
        cursor.execute(
            f"UPDATE {TaskWait._meta.db_table} SET event_id = NULL "
            f"WHERE event_id IN ({_in(event_ids)})",
            event_ids,
        )
        cursor.execute(
            f"""DELETE FROM hotapp_event WHERE id IN ({_in(event_ids)})
                AND NOT EXISTS (SELECT 1 FROM hotapp_run r WHERE r.event_id = hotapp_event.id)""",
            event_ids,
        )
        return cursor.rowcount


# A finished task whose attempts are all finished, by task_name_idx (name, created_at, id).
TASKS_SQL = """
    SELECT t.id, t.created_at FROM hotapp_task t
    WHERE t.name = %s AND t.created_at < %s {after}
      AND t.status IN {task_terminal} AND COALESCE(t.finished_at, t.created_at) < %s
      AND NOT EXISTS (
        SELECT 1 FROM hotapp_run a WHERE a.task_id = t.id
          AND (a.status NOT IN {terminal} OR COALESCE(a.finished_at, a.created_at) >= %s)
      )
    ORDER BY t.created_at, t.id
    LIMIT %s
"""
TASKS_SQL = TASKS_SQL.replace("{terminal}", _IN["terminal"]).replace(
    "{task_terminal}", _IN["task_terminal"]
)


def _keyset(sql: str, after: tuple[Any, Any] | None, alias: str) -> tuple[str, list]:
    """The statement with its keyset condition: rows after the last one of the batch before."""
    if after is None:
        return sql.replace("{after}", ""), []
    return sql.replace("{after}", f"AND ({alias}.created_at, {alias}.id) > (%s, %s)"), list(after)


def _tasks(name: str, limit: datetime, batch: int, dry_run: bool, purged: Purged) -> Iterator[None]:
    when = connection.ops.adapt_datetimefield_value(limit)

    def purge_batch(rows: list[tuple]) -> None:
        task_ids = [row[0] for row in rows]
        run_ids = list(Run.objects.filter(task_id__in=task_ids).values_list("id", flat=True))
        purged.tasks += len(task_ids)
        purged.runs += len(run_ids)
        if not dry_run:
            # Attempts, checkpoints, messages and audit entries CASCADE from the task.
            purged.events += _delete_runs(run_ids, dry_run=False)
            Task.objects.filter(id__in=task_ids).only("id").delete()

    return _keyset_batches(
        TASKS_SQL,
        "t",
        lambda keyset: [name, when, *keyset, *_TASK_TERMINAL, when, *_TERMINAL, when, batch],
        purge_batch,
        dry_run,
        purged,
    )


def unhandled_events(limit: datetime) -> Any:
    """Events no handler subscribed to, sent before `limit`, oldest first (by
    event_unhandled_idx, read backwards)."""
    return Event.objects.filter(is_handled=False, created_at__lt=limit).order_by("created_at", "id")


def _unhandled_events(limit: datetime, batch: int, dry_run: bool, purged: Purged) -> Iterator[None]:
    """Events no handler subscribed to, oldest first by event_unhandled_idx."""
    while True:

        def one_batch() -> int:
            with transaction.atomic():
                ids = list(unhandled_events(limit).values_list("id", flat=True)[:batch])
                if dry_run:
                    return len(ids)
                return _delete_orphan_events(ids)

        if dry_run:
            # Counted, not deleted: a keyset would be needed to go on; count them in one go.
            purged.events += unhandled_events(limit).count()
            return
        deleted = with_db_retry(one_batch, "purge")
        if not deleted:
            return
        purged.batches += 1
        purged.events += deleted
        if deleted < batch:
            return
        yield None


def _alert_deliveries(limit: datetime, batch: int, dry_run: bool, purged: Purged) -> Iterator[None]:
    """Alert deliveries that ended before the global cutoff (their history on the alerts page),
    oldest first by alert_created_idx; one still on its way is kept whatever its age."""
    ended = AlertDelivery.objects.filter(created_at__lt=limit).exclude(
        status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING]
    )
    if dry_run:
        purged.alerts += ended.count()
        return
    while True:

        def one_batch() -> int:
            with transaction.atomic():
                ids = list(ended.order_by("created_at", "id").values_list("id", flat=True)[:batch])
                return AlertDelivery.objects.filter(id__in=ids).delete()[0]

        deleted = with_db_retry(one_batch, "purge")
        if not deleted:
            return
        purged.batches += 1
        purged.alerts += deleted
        if deleted < batch:
            return
        yield None
