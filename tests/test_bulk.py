"""Bulk operations in the runtime: the dry run, batches, skips, overlaps, stops and recovery."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from hotapp.models import BulkOperation, BulkStatus, Run, RunStatus
from runtime import Actor, bulk, retry_run, sweeper
from runtime.bulk import BulkError, execute, preview, start_bulk, stop_bulk
from tests.conftest import all_terminal, wait_for

pytestmark = pytest.mark.django_db


def retries_per_run() -> dict:
    """How many retries (attempt 2 rows) each first attempt got."""
    rows = Run.objects.filter(attempt=2).values("origin_run_id").annotate(n=Count("id"))
    return {row["origin_run_id"]: row["n"] for row in rows}


def test_the_dry_run_counts_exactly_the_runs_the_operation_then_retries(make_runs):
    failed = make_runs(10)
    make_runs(3, status=RunStatus.SUCCEEDED)
    for run in failed[:2]:
        retry_run(run.id)  # already retried: not again

    count = preview("retry", {})
    operation = execute(start_bulk("retry", {}, ring=False).id)

    assert count == 8
    assert (operation.status, operation.total, operation.done) == (BulkStatus.DONE, 8, 8)
    assert (operation.skipped, operation.failed) == (0, 0)
    assert retries_per_run() == {run.id: 1 for run in failed}


def test_450_runs_are_retried_in_three_batches_with_the_progress_recorded_after_each(make_runs):
    failed = make_runs(450)
    operation = start_bulk("retry", {"status": ["failed"]}, ring=False)
    progress = []

    finished = execute(
        operation.id, batch_size=200, on_progress=lambda op: progress.append((op.status, op.done))
    )

    assert progress == [("running", 200), ("running", 400), ("running", 450)]
    assert (finished.status, finished.total, finished.done) == ("done", 450, 450)
    assert finished.started_at and finished.finished_at
    assert retries_per_run() == {run.id: 1 for run in failed}


def test_a_run_that_stops_matching_midway_is_skipped_not_failed(make_runs):
    failed = make_runs(450)
    operation = start_bulk("retry", {}, ring=False)

    def someone_retries_the_oldest_by_hand(op):
        if op.done == 200:
            retry_run(failed[0].id)  # the oldest: the last batch's

    finished = execute(operation.id, on_progress=someone_retries_the_oldest_by_hand)

    assert (finished.total, finished.done, finished.skipped, finished.failed) == (450, 449, 1, 0)
    assert retries_per_run() == {run.id: 1 for run in failed}


def test_a_run_retried_after_its_batch_was_read_is_skipped_by_the_insert(make_runs):
    [run] = make_runs(1)
    operation = start_bulk("retry", {}, ring=False)
    retry_run(run.id)  # between the batch's SELECT and its retry

    assert bulk._retry(operation, [run.id]) == bulk.Outcome(done=0, skipped=1, failed=0, error="")
    assert retries_per_run() == {run.id: 1}


def test_runs_created_after_the_operation_are_not_its_business(make_runs):
    make_runs(3)
    operation = start_bulk("retry", {}, ring=False)
    later = make_runs(2)
    Run.objects.filter(id__in=[r.id for r in later]).update(
        created_at=timezone.now() + timedelta(seconds=1)
    )

    finished = execute(operation.id)

    assert finished.done == 3
    assert not Run.objects.filter(origin_run__in=later).exists()


def test_a_bulk_retry_matches_what_the_runs_page_filter_matches(make_runs):
    make_runs(5)
    Run.objects.filter(input__n=3).update(function="tests.handlers.other")

    assert preview("retry", {"function": "tests.handlers.downstream"}) == 4
    assert preview("retry", {"function": "tests.handlers.downstream", "q": "n:2"}) == 1
    assert preview("retry", {"q": "n:3", "status": "failed"}) == 1
    assert preview("retry", {"status": ["succeeded"]}) == 0


def test_a_malformed_filter_is_refused_with_the_runs_pages_message():
    with pytest.raises(BulkError, match="Since: Enter a valid date/time"):
        preview("retry", {"since": "yesterday"})
    with pytest.raises(BulkError, match="No bulk action 'delete'"):
        preview("delete", {})


def test_bulk_cancel_cancels_queued_runs_and_asks_running_ones_to_stop(make_runs):
    queued = make_runs(3, status=RunStatus.QUEUED)
    running = make_runs(2, status=RunStatus.RUNNING)
    make_runs(1, status=RunStatus.RUNNING, cancel_requested_at=timezone.now())
    make_runs(2, status=RunStatus.SUCCEEDED)

    assert preview("cancel", {}) == 5
    finished = execute(start_bulk("cancel", {}, ring=False).id)

    assert (finished.total, finished.done, finished.skipped) == (5, 5, 0)
    assert {r.status for r in Run.objects.filter(id__in=[r.id for r in queued])} == {"cancelled"}
    for run in Run.objects.filter(id__in=[r.id for r in running]):
        assert run.status == "running" and run.cancel_requested_at is not None


def test_a_run_that_finished_before_its_cancel_is_skipped(make_runs):
    [run] = make_runs(1, status=RunStatus.QUEUED)
    operation = start_bulk("cancel", {}, ring=False)
    Run.objects.filter(id=run.id).update(status=RunStatus.SUCCEEDED)

    assert bulk._cancel(operation, [run.id]) == bulk.Outcome(done=0, skipped=1, failed=0, error="")


def test_stopping_an_operation_keeps_the_batches_done_and_undoes_the_one_in_flight(make_runs):
    make_runs(450)
    operation = start_bulk("retry", {}, ring=False)

    def stop_during_the_second_batch(op):
        if op.done == 200:
            stop_bulk(op.id)

    finished = execute(operation.id, on_progress=stop_during_the_second_batch)

    assert (finished.status, finished.done) == (BulkStatus.CANCELLED, 200)
    assert Run.objects.filter(attempt=2).count() == 200
    assert stop_bulk(operation.id) is False


def test_a_finished_or_held_operation_is_not_claimed_again(make_runs):
    make_runs(2)
    operation = start_bulk("retry", {}, ring=False)
    execute(operation.id)

    assert execute(operation.id) is None
    held = start_bulk("retry", {}, ring=False)
    BulkOperation.objects.filter(id=held.id).update(
        status="running",
        claimed_by="other:1",
        lease_expires_at=timezone.now() + timedelta(seconds=60),
    )
    assert execute(held.id) is None


def test_two_overlapping_operations_never_retry_a_run_twice(transactional_db, make_runs):
    failed = make_runs(450)
    operations = [start_bulk("retry", {}, ring=False) for _ in range(2)]
    errors = []

    def work(operation):
        try:
            execute(operation.id, batch_size=50)
        except Exception as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(op,)) for op in operations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert not errors
    first, second = (BulkOperation.objects.get(id=op.id) for op in operations)
    assert retries_per_run() == {run.id: 1 for run in failed}
    assert first.done + second.done == 450
    assert first.failed == second.failed == 0
    assert {first.status, second.status} == {"done"}
    assert first.done + first.skipped == second.done + second.skipped == 450


def test_a_worker_does_the_operation_off_the_request(celery_worker, make_runs):
    failed = make_runs(450)

    operation = start_bulk("retry", {"status": ["failed"]}, Actor(name="ops"))

    wait_for(lambda: BulkOperation.objects.get(id=operation.id).is_finished, what="the operation")
    finished = BulkOperation.objects.get(id=operation.id)
    assert (finished.status, finished.done, finished.created_by_name) == ("done", 450, "ops")
    assert retries_per_run() == {run.id: 1 for run in failed}
    wait_for(all_terminal, what="the retries to run")
    assert Run.objects.filter(attempt=2, status="succeeded").count() == 450


class Died(BaseException):
    """Passes through execute() like a killed process: the claim stays as it stood."""


def die(operation):
    raise Died


def test_the_sweeper_resumes_an_operation_whose_worker_died(celery_worker, make_runs):
    make_runs(250)
    operation = start_bulk("retry", {}, ring=False)
    # Its executor died after the first batch: a claim nobody renews, a lapsed lease.
    with pytest.raises(Died):
        execute(operation.id, batch_size=200, on_progress=die)
    BulkOperation.objects.filter(id=operation.id).update(
        status="running",
        claimed_by="dead:1",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )

    assert sweeper.sweep()["bulk_resumed"] == 1
    assert sweeper.sweep()["bulk_resumed"] == 0  # rung once per lapse

    wait_for(lambda: BulkOperation.objects.get(id=operation.id).is_finished, what="the operation")
    finished = BulkOperation.objects.get(id=operation.id)
    assert (finished.status, finished.done, finished.skipped) == ("done", 250, 0)
    assert Run.objects.filter(attempt=2).count() == 250


def test_a_run_the_action_cannot_handle_fails_alone_and_the_others_are_done(make_runs, monkeypatch):
    runs = make_runs(5)
    poisoned = runs[2].id
    real = bulk.retry_attempts.next_attempts

    def refuses_one(failed_runs):
        if any(run.id == poisoned for run in failed_runs):
            raise ValueError("cannot copy this one")
        return real(failed_runs)

    monkeypatch.setattr(bulk.retry_attempts, "next_attempts", refuses_one)

    finished = execute(start_bulk("retry", {}, ring=False).id)

    assert (finished.status, finished.done, finished.failed) == ("done", 4, 1)
    assert finished.last_error == f"run {poisoned}: ValueError: cannot copy this one"
    assert set(retries_per_run()) == {r.id for r in runs} - {poisoned}


def plan(queryset) -> str:
    """The plan with sequential scans off (the test tables are tiny): an index must serve it."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    return queryset.explain()


def test_the_sweeper_finds_stalled_operations_from_an_index_of_unfinished_ones():
    stalled = BulkOperation.objects.filter(
        status__in=bulk.UNFINISHED, lease_expires_at__lt=timezone.now()
    ).order_by("lease_expires_at")[:100]

    assert "bulk_unfinished_idx" in plan(stalled)


def test_a_retry_batch_reads_indexes_only():
    batch = bulk.matching("retry", {"status": "failed"}).newest_first()[:200]

    query_plan = plan(batch)
    # Failed and not superseded is exactly what the needs-attention index holds.
    assert "run_attention_idx" in query_plan and "Seq Scan" not in query_plan
