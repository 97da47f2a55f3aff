"""Retention: finished runs, their traces, audit entries and events go after their policy, in
bounded batches; unfinished runs, chains with a pending retry and events still in use stay."""

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from hotapp.ids import uuid7
from hotapp.models import (
    AlertDelivery,
    AuditEntry,
    Event,
    Run,
    RunStatus,
    RunTrace,
    Task,
    TaskCheckpoint,
    TaskMessage,
)
from runtime import on_event, registry, retention, scheduler
from runtime.exceptions import DuplicateHandler
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db

DOWNSTREAM = "tests.handlers.downstream"
NOW = timezone.now()


def ago(days: float):
    return NOW - timedelta(days=days)


def make_event(days_old: float, event_type: str = "test:downstream") -> Event:
    event = Event(type=event_type, data={}, created_at=ago(days_old), is_handled=True)
    event.stream_id = event.id
    event.save()
    return event


def make_run(
    days_old: float,
    status: str = RunStatus.SUCCEEDED,
    *,
    event: Event | None = None,
    function: str = DOWNSTREAM,
    finished_days_old: float | None = None,
    **fields,
) -> Run:
    event = event or make_event(days_old)
    finished = ago(days_old if finished_days_old is None else finished_days_old)
    run = Run.objects.create(
        function=function,
        trigger="event",
        event=event,
        event_type=event.type,
        stream_id=event.stream_id,
        status=status,
        created_at=ago(days_old),
        finished_at=finished if status in ("succeeded", "failed", "cancelled") else None,
        **fields,
    )
    if status in ("succeeded", "failed", "cancelled"):
        RunTrace.objects.create(run=run, data={"spans": []})
    return run


def exists(obj) -> bool:
    return type(obj).objects.filter(pk=obj.pk).exists()


def test_a_finished_run_past_the_default_goes_with_its_trace_audit_entries_and_event():
    old = make_run(31)
    AuditEntry.objects.create(action="retry", run=old, via="page")
    recent = make_run(29)

    purged = retention.purge(NOW)

    assert not exists(old) and not exists(old.event)
    assert not RunTrace.objects.filter(run_id=old.id).exists()
    assert not AuditEntry.objects.filter(run_id=old.id).exists()
    assert exists(recent) and exists(recent.event) and RunTrace.objects.filter(run=recent).exists()
    assert (purged.runs, purged.chains, purged.events) == (1, 1, 1)


@pytest.mark.parametrize("status", ["queued", "running", "pending_retry"])
def test_an_unfinished_run_is_never_purged_however_old(status):
    run = make_run(400, status)

    retention.purge(NOW)

    assert exists(run) and exists(run.event)


def test_a_chain_with_a_pending_retry_stays_whole():
    first = make_run(40, RunStatus.FAILED, is_superseded=True)
    second = make_run(40, RunStatus.PENDING_RETRY, event=first.event, origin_run=first, attempt=2)

    retention.purge(NOW)

    assert exists(first) and exists(second)


def test_a_chain_goes_whole_only_once_its_last_attempt_finished_before_the_cutoff():
    first = make_run(40, RunStatus.FAILED, is_superseded=True)
    second = make_run(
        40,
        RunStatus.SUCCEEDED,
        event=first.event,
        origin_run=first,
        attempt=2,
        finished_days_old=10,
    )
    done = make_run(40, RunStatus.FAILED, is_superseded=True)
    done_second = make_run(40, RunStatus.FAILED, event=done.event, origin_run=done, attempt=2)

    purged = retention.purge(NOW)

    assert exists(first) and exists(second)
    assert not exists(done) and not exists(done_second)
    assert (purged.chains, purged.runs) == (1, 2)


def test_an_event_whose_other_run_is_unfinished_or_kept_stays():
    event = make_event(40)
    purged_run = make_run(40, event=event)
    waiting = make_run(40, RunStatus.QUEUED, event=event, function="tests.handlers.fanout_b")

    retention.purge(NOW)

    assert not exists(purged_run)
    assert exists(waiting) and exists(event)


def test_rows_that_point_at_a_purged_run_stay_unlinked():
    old = make_run(40)
    sent = make_event(40)
    Event.objects.filter(id=sent.id).update(source_run=old)
    kept_by_sent = make_run(1, RunStatus.QUEUED, event=sent)
    rerun = make_run(1, event=old.event, rerun_of=old)

    retention.purge(NOW)

    assert not exists(old)
    assert Event.objects.get(id=sent.id).source_run_id is None and exists(kept_by_sent)
    # The rerun kept its (old) event: an event goes only with the last of its runs.
    assert Run.objects.get(id=rerun.id).rerun_of_id is None and exists(old.event)


def test_a_function_policy_wins_over_the_default_and_zero_keeps_forever(settings):
    short = make_run(2, function="tests.handlers.short_lived")
    forever = make_run(4000, function="tests.handlers.kept_forever")
    default = make_run(2)

    retention.purge(NOW)

    assert not exists(short)
    assert exists(forever) and exists(default)


def test_a_default_of_zero_keeps_everything_without_a_policy_of_its_own(settings):
    settings.HOT = {**settings.HOT, "RETENTION_DAYS": 0}
    default = make_run(4000)
    short = make_run(2, function="tests.handlers.short_lived")

    retention.purge(NOW)

    assert exists(default) and not exists(short)


def test_a_pass_stops_after_its_batches_and_the_next_one_goes_on():
    runs = [make_run(40) for _ in range(7)]

    first = retention.purge(NOW, batch=2, max_batches=2)
    assert (first.chains, first.batches, first.is_complete) == (4, 2, False)
    assert Run.objects.count() == 3

    second = retention.purge(NOW, batch=2)
    assert second.chains == 3 and second.is_complete
    assert not any(exists(run) for run in runs)


def test_each_batch_is_its_own_transaction_deleting_at_most_a_batch():
    for _ in range(6):
        make_run(40)

    with CaptureQueriesContext(connection) as queries:
        retention.purge(NOW, batch=2)

    # Inside the test's own transaction each atomic() block is a savepoint: every DELETE of
    # runs sits in a block of its own, which releases before the next one starts.
    blocks, open_block = [], None
    for query in (q["sql"] for q in queries):
        if query.startswith("SAVEPOINT"):
            open_block = []
        elif query.startswith("RELEASE SAVEPOINT"):
            blocks.append(open_block)
            open_block = None
        elif query.startswith('DELETE FROM "hotapp_run"'):
            assert open_block is not None
            open_block.append(query)
    assert [len(block) for block in blocks if block] == [1, 1, 1]  # six chains, two a batch


def test_a_finished_task_goes_with_its_attempts_checkpoints_and_messages():
    task = Task.objects.create(
        name="tests.task_handlers.counter",
        stream_id=uuid7(),
        status="completed",
        created_at=ago(40),
        finished_at=ago(40),
    )
    attempt = Run.objects.create(
        function=task.name,
        trigger="task",
        task=task,
        stream_id=task.stream_id,
        status="succeeded",
        created_at=ago(40),
        finished_at=ago(40),
    )
    TaskCheckpoint.objects.create(task=task, run=attempt, state={"n": 1})
    TaskMessage.objects.create(task=task, direction="in", body={}, consumed_by=attempt)
    running = Task.objects.create(
        name="tests.task_handlers.counter",
        stream_id=uuid7(),
        status="running",
        created_at=ago(40),
    )

    purged = retention.purge(NOW)

    assert not exists(task) and not exists(attempt)
    assert not TaskCheckpoint.objects.exists() and not TaskMessage.objects.exists()
    assert exists(running)
    assert (purged.tasks, purged.runs) == (1, 1)


def test_old_unhandled_events_go_after_the_default():
    old = Event.objects.create(type="nobody:listens", stream_id=uuid7(), created_at=ago(31))
    recent = Event.objects.create(type="nobody:listens", stream_id=uuid7(), created_at=ago(1))

    assert retention.purge(NOW).events == 1
    assert not exists(old) and exists(recent)


def test_old_alert_deliveries_go_after_the_default_unless_still_on_their_way():
    def delivery(days_old: float, status: str) -> AlertDelivery:
        return AlertDelivery.objects.create(
            channel="ops", kind="failed", chain_id=uuid7(), status=status, created_at=ago(days_old)
        )

    old_sent, old_failed = delivery(31, "sent"), delivery(31, "failed")
    old_pending, recent = delivery(31, "pending"), delivery(1, "sent")

    assert retention.purge(NOW, dry_run=True).alerts == 2
    assert retention.purge(NOW).alerts == 2
    assert not exists(old_sent) and not exists(old_failed)
    assert exists(old_pending) and exists(recent)


def test_a_dry_run_counts_and_deletes_nothing():
    make_run(40)
    make_run(40)
    Event.objects.create(type="nobody:listens", stream_id=uuid7(), created_at=ago(31))

    counted = retention.purge(NOW, dry_run=True)

    assert (counted.chains, counted.runs, counted.events) == (2, 2, 3)
    assert Run.objects.count() == 2 and Event.objects.count() == 3


def test_hot_purge_dry_run_prints_the_counts_and_hot_purge_deletes():
    make_run(40)

    out = StringIO()
    call_command("hot", "purge", "--dry-run", stdout=out)
    assert "Would delete 1 runs (1 chains), 0 tasks, 1 events" in out.getvalue()
    assert "30 days by default" in out.getvalue()
    assert "tests.handlers.short_lived: 1 days" in out.getvalue()
    assert Run.objects.count() == 1

    out = StringIO()
    call_command("hot", "purge", stdout=out)
    assert "Deleted 1 runs (1 chains)" in out.getvalue()
    assert not Run.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_scheduler_purges_on_its_own(settings):
    settings.HOT = {**settings.HOT, "PURGE_INTERVAL_SECONDS": 0.5}
    old = make_run(40)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: not exists(old), what="the scheduler's purge")
    finally:
        stop.set()
        thread.join(10)


def test_a_policy_must_be_a_number_of_days():
    with pytest.raises(ValueError, match="retention_days"):
        on_event("test:bad-retention", retention_days=-1)
    with pytest.raises(ValueError, match="retention_days"):
        on_event("test:bad-retention", retention_days="7")


def test_stacked_subscriptions_must_agree_on_their_retention():
    def stacked(event):
        return None

    on_event("test:stack-a", retention_days=3, name="tests.stacked_retention")(stacked)
    try:
        with pytest.raises(DuplicateHandler, match="retention"):
            on_event("test:stack-b", retention_days=4, name="tests.stacked_retention")(stacked)
    finally:
        registry.unregister("tests.stacked_retention")


def explain(sql: str, params: list) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_a_purge_batch_walks_its_function_index_and_finds_retries_by_their_origin():
    sql, keyset = retention._keyset(retention.CHAINS_SQL, (NOW, uuid7()), "h")
    terminal = list(retention._TERMINAL)
    text = explain(sql, [DOWNSTREAM, NOW, *keyset, *terminal, NOW, *terminal, NOW, 500])

    assert "run_function_idx" in text, text
    assert "origin_run" in text or "run_one_row_per_attempt" in text, text


def test_a_task_purge_batch_and_the_list_of_names_read_the_task_name_index():
    sql, keyset = retention._keyset(retention.TASKS_SQL, (NOW, uuid7()), "t")
    task_terminal, terminal = list(retention._TASK_TERMINAL), list(retention._TERMINAL)
    text = explain(sql, ["x", NOW, *keyset, *task_terminal, NOW, *terminal, NOW, 500])

    assert "task_name_idx" in text, text
    assert "task_name_idx" in explain(retention.DISTINCT_SQL.format("hotapp_task", "name"), [])
    assert "run_function_idx" in explain(
        retention.DISTINCT_SQL.format("hotapp_run", "function"), []
    )


def test_old_unhandled_events_are_found_from_their_partial_index():
    queryset = retention.unhandled_events(NOW)[:500]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    assert "event_unhandled_idx" in queryset.explain()
