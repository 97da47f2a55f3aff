"""Schedules: handlers that run on a cron expression, in UTC.

    @on_schedule("*/5 * * * *", retry=2)          # also "@hourly", 6-field with seconds,
    def refresh_rates(tick):                     # or "every 10 minutes"
        ...tick.scheduled_at...

The scheduler (`hot scheduler`, or the loop inside `hot dev`) creates one run per tick. A unique
constraint on (schedule, scheduled_at) makes that exactly one even with several schedulers
running: the second INSERT of a tick is skipped. Ticks missed while nothing ran are not made up,
except the newest one, unless the schedule asks for `backfill=N` (then at most N).
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from hotapp.ids import uuid7
from hotapp.models import AuditAction, Run, RunStatus, Schedule, Trigger
from runtime import audit, dispatch, registry
from runtime.audit import Actor
from runtime.cron import Cron, parse
from runtime.exceptions import HotError
from runtime.live import runs_changed
from runtime.retry_policy import Retry, as_policy

logger = logging.getLogger("hot.schedules")
# How far back the scheduler looks for missed ticks after downtime.
LOOKBACK = timedelta(days=7)


class ScheduleNotFound(HotError, LookupError):
    """No schedule has this name."""


class AmbiguousScheduleName(HotError, LookupError):
    """Several schedules have this short name; give the full one."""


def on_schedule(
    expression: str,
    *,
    retry: int | Retry | None = None,
    name: str | None = None,
    trace: bool = True,
    backfill: int = 0,
    retention_days: float | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the decorated function on every tick of `expression` (UTC).

    The function receives a `Tick` (`tick.scheduled_at`). A malformed expression raises
    `CronError` here, when the module is imported, not later in the scheduler.
    """
    cron = parse(expression)
    if not isinstance(backfill, int) or backfill < 0:
        raise ValueError("backfill must be a whole number of ticks, 0 or more")
    policy = as_policy(retry)
    keep = registry.check_retention_days(retention_days)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        registry.register(
            registry.Handler(
                registry.handler_name(fn, name),
                fn,
                "",
                policy,
                trace,
                kind="schedule",
                options={"cron": cron, "backfill": backfill},
                retention_days=keep,
            )
        )
        return fn

    return decorate


def cron_of(name: str) -> Cron:
    handler = registry.handler_named(name)
    if handler is None or handler.kind != "schedule":
        raise ScheduleNotFound(f"No schedule named {name!r} is registered")
    return handler.options["cron"]


def sync(now: datetime | None = None) -> dict[str, Schedule]:
    """Make a Schedule row for every registered schedule (a new one starts from now) and keep
    its expression in step with the code; returns every row by name.

    One SELECT when nothing changed, so the schedules page can call it on every view: a
    schedule deployed since the scheduler started is listed with its row (and Pause) at once.
    """
    now = now or timezone.now()
    rows = {row.name: row for row in Schedule.objects.all()}
    for handler in registry.all_handlers("schedule"):
        cron, backfill = handler.options["cron"], handler.options["backfill"]
        row = rows.get(handler.name)
        if row is None:
            # get_or_create: another process may be making the same row right now.
            rows[handler.name], _ = Schedule.objects.get_or_create(
                name=handler.name,
                defaults={"expression": cron.expression, "backfill": backfill, "last_tick_at": now},
            )
        elif (row.expression, row.backfill) != (cron.expression, backfill):
            Schedule.objects.filter(id=row.id).update(
                expression=cron.expression, backfill=backfill, updated_at=now
            )
            row.expression, row.backfill = cron.expression, backfill
    return rows


def fire_due(now: datetime | None = None) -> int:
    """Create the runs of every due tick of every active schedule; returns how many."""
    now = now or timezone.now()
    created = 0
    for schedule in Schedule.objects.filter(is_paused=False):
        handler = registry.handler_named(schedule.name)
        if handler is None or handler.kind != "schedule":
            continue  # declared in code no longer, or not in this process
        cron: Cron = handler.options["cron"]
        since = max(schedule.last_tick_at or now, now - LOOKBACK)
        # The newest tick (or the newest `backfill`), found walking back from now: after a long
        # outage a schedule firing every second costs as little as after a short one.
        ticks = cron.between(since, now, limit=max(1, schedule.backfill))
        if ticks:
            created += _fire(schedule, handler, ticks, now)
    return created


def _fire(
    schedule: Schedule, handler: registry.Handler, ticks: list[datetime], now: datetime
) -> int:
    policy = handler.retry.as_dict()
    runs = [
        Run(
            id=uuid7(),
            function=schedule.name,
            trigger=Trigger.SCHEDULE,
            schedule=schedule,
            scheduled_at=tick,
            stream_id=uuid7(),
            input={"scheduled_at": tick.isoformat()},
            retry_policy=policy,
            status=RunStatus.QUEUED,
            created_at=now,
            updated_at=now,
            queued_at=now,
        )
        for tick in ticks
    ]
    ids = [run.id for run in runs]
    with transaction.atomic():
        # Another scheduler may have inserted some of these ticks: those rows are skipped
        # (the unique constraint), and only the rows that went in get a doorbell.
        Run.objects.bulk_create(runs, ignore_conflicts=True)
        inserted = list(Run.objects.filter(id__in=ids).values_list("id", flat=True))
        Schedule.objects.filter(id=schedule.id, last_tick_at=schedule.last_tick_at).update(
            last_tick_at=ticks[-1], updated_at=now
        )
        dispatch.enqueue_on_commit(inserted)
        if inserted:
            runs_changed()
    if inserted:
        logger.info(
            "schedule %s fired %d tick(s)",
            schedule.name,
            len(inserted),
            extra={"action": "fire", "schedule": schedule.name},
        )
    return len(inserted)


def full_name(name: str) -> str:
    """A schedule's full name, from itself or from the short name the pages show
    (`tidy_abandoned_carts` for `shop.handlers.tidy_abandoned_carts`)."""
    names = list(Schedule.objects.values_list("name", flat=True))
    if name in names:
        return name
    matches = sorted(full for full in names if full.rsplit(".", 1)[-1] == name)
    if len(matches) > 1:
        raise AmbiguousScheduleName(
            f"Several schedules are called {name!r}: {', '.join(matches)}; give the full name"
        )
    if not matches:
        raise ScheduleNotFound(f"No schedule named {name!r}")
    return matches[0]


def pause(name: str, actor: Actor | None = None) -> None:
    """Stop creating runs for a schedule until it is resumed."""
    _change(name, AuditAction.SCHEDULE_PAUSE, actor, is_paused=True)


def resume(name: str, actor: Actor | None = None) -> None:
    """Start firing again from now on; the ticks missed while paused are not made up."""
    _change(name, AuditAction.SCHEDULE_RESUME, actor, is_paused=False, last_tick_at=timezone.now())


def _change(name: str, action: Any, actor: Actor | None, **fields: Any) -> None:
    with transaction.atomic():
        schedule_id = Schedule.objects.filter(name=name).values_list("id", flat=True).first()
        if schedule_id is None:
            raise ScheduleNotFound(f"No schedule named {name!r}")
        Schedule.objects.filter(id=schedule_id).update(updated_at=timezone.now(), **fields)
        audit.record(action, actor, schedule_id=schedule_id)
