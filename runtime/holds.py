"""Held runs: queued runs that must not be claimed yet (a delayed event, a rate limit, a
debounce, a task's durable sleep or wait). A held run carries `available_at` and a
`wait_reason`; workers' claims skip it (run_ready_idx holds only runs without one), and it
gets no doorbell. The scheduler's loop calls release_due() every second: each run that is due
loses its hold and gets its doorbell, so a hold costs nothing while it waits and survives any
worker or scheduler restart (it is only a row)."""

import logging
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from hotapp.models import Run, RunStatus
from runtime import dispatch
from runtime.live import runs_changed

logger = logging.getLogger("hot.holds")
BATCH = 500


def parse_delay(delay: "timedelta | float | int | None", at: datetime | None) -> datetime | None:
    """When something sent with `delay` (a timedelta or seconds) or `at` (an aware datetime) is
    due; None for at once. Raises ValueError for both, a negative delay or a naive `at`."""
    if delay is not None and at is not None:
        raise ValueError("give delay= or at=, not both")
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, timedelta | int | float):
            raise ValueError(f"delay= takes a timedelta or a number of seconds, not {delay!r}")
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        if not seconds >= 0:  # also refuses NaN
            raise ValueError(f"delay= must not be negative: {delay!r}")
        return timezone.now() + timedelta(seconds=seconds) if seconds > 0 else None
    if at is not None:
        if not isinstance(at, datetime) or timezone.is_naive(at):
            raise ValueError(f"at= takes a time-zone-aware datetime, not {at!r}")
        return at if at > timezone.now() else None
    return None


def release_due(now: datetime | None = None) -> int:
    """Release up to BATCH held runs whose time has come and ring their doorbells; returns how
    many. Runs still waiting for a concurrency slot are released by the runs that free one
    (they have no available_at)."""
    now = now or timezone.now()
    table = Run._meta.db_table
    stamp = Run._meta.get_field("available_at").get_db_prep_value(now, connection)
    lock = (
        " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    )
    # One statement: two schedulers releasing at once each take other rows (SKIP LOCKED), and
    # the status and hold are checked again by the UPDATE itself, so a run cancelled meanwhile
    # stays cancelled. Served by run_held_idx.
    sql = (
        f"UPDATE {table} SET available_at = NULL, wait_reason = '', queued_at = %s, "
        f"updated_at = %s WHERE status = %s AND available_at IS NOT NULL AND id IN ("
        f"SELECT id FROM {table} WHERE status = %s AND available_at <= %s "
        f"ORDER BY available_at LIMIT %s{lock}) RETURNING id, trigger"
    )
    queued = str(RunStatus.QUEUED)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [stamp, stamp, queued, queued, stamp, BATCH])
        released = [(Run._meta.pk.to_python(run_id), trigger) for run_id, trigger in cursor]
        if released:
            transaction.on_commit(lambda: dispatch.enqueue_by_queue(released))
    if released:
        runs_changed()
        logger.info("released %d held runs", len(released), extra={"action": "release_holds"})
    return len(released)
