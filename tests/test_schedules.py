"""Schedules: one run per tick (even with two schedulers), no back-fill unless asked, pause."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from hotapp.models import Run, RunStatus, Schedule, Trigger
from runtime import on_schedule, registry, scheduler, schedules
from runtime.cron import CronError, parse
from tests.conftest import drain, wait_for

TEN_SECONDS = "tests.task_handlers.every_ten_seconds"
BACKFILL = "tests.task_handlers.every_five_minutes_with_backfill"


def backdate(name: str, **delta) -> datetime:
    when = timezone.now() - timedelta(**delta)
    Schedule.objects.filter(name=name).update(last_tick_at=when)
    return when


def test_a_malformed_expression_is_an_error_when_the_module_is_imported():
    with pytest.raises(CronError, match="minute"):
        on_schedule("61 * * * *")(lambda tick: None)
    with pytest.raises(CronError):
        on_schedule("every fortnight")(lambda tick: None)


@pytest.mark.django_db
def test_sync_registers_every_schedule_starting_from_now():
    schedules.sync()

    row = Schedule.objects.get(name=TEN_SECONDS)
    assert row.expression == "every 10 seconds" and not row.is_paused
    assert timezone.now() - row.last_tick_at < timedelta(seconds=5)
    assert schedules.fire_due() == 0  # nothing is due yet, and nothing from the past


@pytest.mark.django_db
def test_a_due_tick_becomes_one_run_whose_handler_gets_scheduled_at():
    schedules.sync()
    backdate(TEN_SECONDS, seconds=15)

    assert schedules.fire_due() == 1
    drain()

    run = Run.objects.get(function=TEN_SECONDS)
    assert run.trigger == Trigger.SCHEDULE and run.status == RunStatus.SUCCEEDED
    assert run.scheduled_at.second % 10 == 0
    assert run.result == {"scheduled_at": run.scheduled_at.isoformat(), "schedule": TEN_SECONDS}
    assert schedules.fire_due() == 0  # the same tick never fires twice


@pytest.mark.django_db
def test_missed_ticks_are_not_back_filled_unless_the_schedule_asks():
    schedules.sync()
    backdate(TEN_SECONDS, hours=1)  # 360 ticks missed
    backdate(BACKFILL, hours=1)  # 12 ticks missed, backfill=3

    schedules.fire_due()

    assert Run.objects.filter(function=TEN_SECONDS).count() == 1  # only the newest tick
    ticks = sorted(Run.objects.filter(function=BACKFILL).values_list("scheduled_at", flat=True))
    assert len(ticks) == 3 and all(
        b - a == timedelta(minutes=5) for a, b in zip(ticks, ticks[1:], strict=False)
    )


@pytest.fixture
def every_second():
    """A schedule firing every second, declared for one test only (the others would see it
    tick during their own checks)."""
    name = "tests.every_second"
    on_schedule("* * * * * *", name=name, backfill=0)(lambda tick: None)
    yield name
    registry.unregister(name)


@pytest.mark.django_db
@pytest.mark.parametrize(("backfill", "fired"), [(0, [0]), (3, [2, 1, 0])])
def test_a_schedule_firing_every_second_fires_its_newest_ticks_after_days_down(
    every_second, backfill, fired
):
    schedules.sync()
    Schedule.objects.filter(name=every_second).update(backfill=backfill)
    backdate(every_second, days=2)  # 172,800 ticks missed
    now = timezone.now()

    assert schedules.fire_due(now) == len(fired)

    newest = now.replace(microsecond=0)
    ticks = Run.objects.filter(function=every_second).order_by("scheduled_at")
    assert [t.scheduled_at for t in ticks] == [newest - timedelta(seconds=s) for s in fired]
    assert Schedule.objects.get(name=every_second).last_tick_at == newest
    assert schedules.fire_due(now) == 0


@pytest.mark.django_db
def test_a_paused_schedule_does_not_fire_and_resumes_from_now():
    schedules.sync()
    backdate(TEN_SECONDS, minutes=5)
    schedules.pause(TEN_SECONDS)

    assert schedules.fire_due() == 0
    schedules.resume(TEN_SECONDS)
    assert schedules.fire_due() == 0  # the paused ticks are not made up
    with pytest.raises(schedules.ScheduleNotFound):
        schedules.pause("no.such.schedule")


@pytest.mark.django_db
def test_a_failed_tick_is_retried_with_the_same_scheduled_at():
    schedules.sync()
    backdate("tests.task_handlers.hourly_and_flaky", hours=2)
    schedules.fire_due()

    drain()

    first, retry = Run.objects.filter(function__endswith="hourly_and_flaky").order_by("attempt")
    assert (first.status, retry.status) == (RunStatus.FAILED, RunStatus.SUCCEEDED)
    assert retry.scheduled_at == first.scheduled_at and retry.origin_run_id == first.id
    assert first.scheduled_at.minute == 0 and first.scheduled_at.second == 0


@pytest.mark.django_db
def test_two_schedulers_firing_the_same_tick_make_one_run():
    schedules.sync()
    backdate(TEN_SECONDS, seconds=15)
    stale = Schedule.objects.get(name=TEN_SECONDS)  # both schedulers read this state
    handler = registry.handler_named(TEN_SECONDS)
    ticks = handler.options["cron"].between(stale.last_tick_at, timezone.now(), 10)

    first = schedules._fire(stale, handler, ticks, timezone.now())
    second = schedules._fire(stale, handler, ticks, timezone.now())

    assert (first, second) == (len(ticks), 0)
    assert Run.objects.filter(function=TEN_SECONDS).count() == len(ticks)


@pytest.mark.services
def test_two_scheduler_threads_at_once_make_one_run_per_tick(transactional_db):
    schedules.sync()
    backdate(TEN_SECONDS, minutes=1)
    Schedule.objects.filter(name=BACKFILL).update(backfill=50)
    backdate(BACKFILL, hours=2)  # 24 ticks, 24 runs
    barrier = threading.Barrier(2)

    def scheduler():
        barrier.wait()
        try:
            schedules.fire_due()
        finally:
            connection.close()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    per_tick = Run.objects.filter(function=BACKFILL).values_list("scheduled_at", flat=True)
    assert len(per_tick) == len(set(per_tick)) == 24
    assert Run.objects.filter(function=TEN_SECONDS).count() == 1


def test_tick_times_are_utc():
    cron = parse("0 9 * * MON-FRI")
    tick = cron.next_after(datetime(2026, 11, 27, 10, 0, tzinfo=UTC))  # a Friday

    assert tick == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.mark.services
def test_the_scheduler_loop_fires_a_due_schedule_and_stops_when_asked(transactional_db):
    schedules.sync()
    backdate(TEN_SECONDS, seconds=15)
    stop = threading.Event()

    def loop():
        try:
            scheduler.run_forever(stop, sweep_interval=60)
        finally:
            connection.close()

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        wait_for(
            lambda: Run.objects.filter(function=TEN_SECONDS, trigger=Trigger.SCHEDULE).exists(),
            what="the scheduler to fire the due tick",
        )
    finally:
        stop.set()
        thread.join(10)

    assert not thread.is_alive()
