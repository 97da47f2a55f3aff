"""Batched execution: one doorbell drains the event queue in batches, each claimed in one
statement and committed in one transaction (runtime/executor.py drain)."""

import base64
import json
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from hotapp.ids import uuid7
from hotapp.models import Event, Run, RunStatus, RunTrace
from runtime import dispatch, executor, send, start, sweeper
from runtime.context import PendingEvent
from runtime.events import persist_events
from runtime.transitions import transition

pytestmark = pytest.mark.django_db


@pytest.fixture
def batch_of(settings, monkeypatch):
    """Batches of exactly `size` runs: the limit set, and the handler-time estimate at zero."""

    def configure(size: int) -> None:
        settings.HOT = {**settings.HOT, "CLAIM_BATCH": size}
        monkeypatch.setattr(executor._sizer, "average", 0.0)

    return configure


def send_batch(count: int, **data) -> None:
    for n in range(count):
        send("test:batch", {"n": n, **data})


def test_one_doorbell_runs_every_queued_run_in_queue_order(batch_of):
    batch_of(4)
    send_batch(10, send={"next": True})

    # The ten, then the ten runs their events queued.
    assert executor.drain() == 20

    runs = list(Run.objects.filter(event_type="test:batch").order_by("queued_at", "id"))
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * 10
    assert [run.result for run in runs] == list(range(10))
    assert RunTrace.objects.filter(run__in=runs).count() == 10
    # Each run's own event, in its own stream, with its run.
    for run in runs:
        [sent] = Event.objects.filter(source_run=run)
        assert sent.stream_id == run.stream_id and sent.runs.get().status == RunStatus.SUCCEEDED
    # Started in order, each after the one before had finished.
    for before, after in zip(runs, runs[1:], strict=False):
        assert before.finished_at <= after.started_at


def test_a_batch_costs_the_same_statements_whatever_its_size(batch_of):
    def statements_for(count: int) -> int:
        send_batch(count, send={"next": True})
        with CaptureQueriesContext(connection) as queries:
            executor.drain()
        Run.objects.all().delete()
        return len(queries)

    batch_of(20)
    # One batch, then the empty claim that ends the drain.
    assert statements_for(2) == statements_for(20)


def test_a_failing_run_keeps_its_sends_out_and_does_not_hold_back_the_rest(batch_of):
    batch_of(10)
    send_batch(2, send={"from": "batch"})
    send("test:always-fails", {})
    send_batch(2, send={"from": "batch"})

    executor.drain()

    statuses = Counter(Run.objects.filter(event_type="test:batch").values_list("status", flat=True))
    assert statuses == {RunStatus.SUCCEEDED: 4}
    failed = Run.objects.get(event_type="test:always-fails")
    assert failed.status == RunStatus.PENDING_RETRY and "attempt 1 failed" in failed.error_message
    assert not Event.objects.filter(type="test:should-not-arrive").exists()
    assert Event.objects.filter(type="test:downstream").count() == 4


def test_a_run_ended_by_someone_else_while_its_batch_ran_is_left_alone(batch_of):
    batch_of(10)
    send_batch(3, send={"from": "batch"})
    token = "worker-under-test"
    runs = executor.claim_batch(token, 10)
    victim = runs[1]
    # What an operator's forced cancel does to a run that ignores the request.
    transition(Run.objects.filter(id=victim.id), status=RunStatus.CANCELLED)

    executor._run_batch(runs, token)

    victim.refresh_from_db()
    assert victim.status == RunStatus.CANCELLED and victim.result is None
    assert not Event.objects.filter(source_run=victim).exists()
    assert not RunTrace.objects.filter(run=victim).exists()
    others = Run.objects.filter(id__in=[runs[0].id, runs[2].id])
    assert {run.status for run in others} == {RunStatus.SUCCEEDED}


def test_task_attempts_are_left_to_the_task_queue(batch_of):
    batch_of(10)
    handle = start("tests.task_handlers.count_items", {"total": 1, "log": "/dev/null"})
    send_batch(1)

    assert executor.drain() == 1

    attempt = Run.objects.get(task_id=handle.id)
    assert attempt.status == RunStatus.QUEUED


def test_slow_handlers_are_claimed_one_at_a_time_and_fast_ones_in_full_batches(settings):
    settings.HOT = {**settings.HOT, "CLAIM_BATCH": 20}
    sizer = executor._BatchSizer()
    for _ in range(10):
        sizer.observe(2.0, 1)
    assert sizer.size() == 1
    for _ in range(30):
        sizer.observe(0.001, 10)
    assert sizer.size() == 20


@pytest.mark.django_db(transaction=True)
def test_two_workers_draining_at_once_run_every_run_exactly_once(batch_of, tmp_path):
    batch_of(8)
    log = tmp_path / "executions.log"
    send_batch(120, log=str(log))

    def worker() -> None:
        try:
            executor.drain()
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    executions = Counter(log.read_text().split())
    assert len(executions) == 120 and set(executions.values()) == {1}
    assert set(Run.objects.values_list("status", flat=True)) == {RunStatus.SUCCEEDED}


@pytest.mark.django_db(transaction=True)
def test_every_run_of_a_batch_keeps_its_lease_until_the_batch_is_saved(
    batch_of, settings, tmp_path
):
    """The middle run outlives the lease: the first (done, not yet saved) and the last (waiting
    its turn) must not be taken by the sweeper for runs of a dead worker."""
    batch_of(3)
    # The lease keeper's thread may be asleep for up to 2 s (its interval under the default
    # lease) before it notices this shorter lease: 3 s leaves room for that.
    settings.HOT = {**settings.HOT, "RUN_LEASE_SECONDS": 3.0}
    log = tmp_path / "executions.log"
    send("test:batch", {"n": 0, "log": str(log)})
    send("test:batch", {"n": 1, "sleep": 5.0, "log": str(log)})
    send("test:batch", {"n": 2, "log": str(log)})
    recovered: list[int] = []

    def sweep_while_it_runs() -> None:
        try:
            time.sleep(4.0)
            recovered.append(sweeper.sweep()["recovered"])
        finally:
            connection.close()

    sweeping = threading.Thread(target=sweep_while_it_runs)
    sweeping.start()
    executor.drain()
    sweeping.join(10)

    assert recovered == [0]
    assert Counter(log.read_text().split()) == {str(r.id): 1 for r in Run.objects.all()}
    assert set(Run.objects.values_list("status", flat=True)) == {RunStatus.SUCCEEDED}


def test_a_malformed_or_unknown_doorbell_claims_and_writes_nothing():
    send_batch(1)

    with CaptureQueriesContext(connection) as malformed:
        executor.execute("not-a-uuid")
    with CaptureQueriesContext(connection) as unknown:
        executor.execute(uuid.uuid4())

    assert len(malformed) == 0
    [claim] = unknown  # a claim that matched no row, and nothing after it
    assert claim["sql"].startswith("UPDATE")
    run = Run.objects.get()
    assert run.status == RunStatus.QUEUED and run.started_at is None and not run.claimed_by


@pytest.mark.django_db(transaction=True)
def test_a_draining_worker_rings_no_doorbell_for_the_runs_it_claims_next(batch_of, redis_client):
    batch_of(10)
    send_batch(3, send={"next": True})
    dispatch.flush()
    redis_client.delete("celery")  # the doorbells of the sends

    assert executor.drain() == 6

    assert redis_client.llen("celery") == 0


@pytest.mark.django_db(transaction=True)
def test_runs_past_what_the_worker_runs_next_ring_one_doorbell_per_batch(settings, redis_client):
    settings.HOT = {**settings.HOT, "CLAIM_BATCH": 2}
    sent = [(PendingEvent(uuid7(), "test:batch", {"n": n}), None, None) for n in range(5)]
    redis_client.delete("celery")

    with transaction.atomic():
        mine = persist_events(sent, keep=3, token="worker-under-test")
    dispatch.flush()

    assert [run.input["n"] for run in mine] == [0, 1, 2]
    assert {run.status for run in Run.objects.filter(id__in=[r.id for r in mine])} == {
        RunStatus.RUNNING
    }
    [message] = redis_client.lrange("celery", 0, -1)
    body = json.loads(base64.b64decode(json.loads(message)["body"]))
    fourth = Run.objects.get(input__n=3)
    assert body[0] == [str(fourth.id)] and fourth.status == RunStatus.QUEUED


def test_a_run_sending_thousands_of_events_commits_them_all(batch_of):
    """More rows than one statement may bind: the INSERTs are split."""
    batch_of(10)
    send("test:many-sends", {"count": 2500})

    while executor.drain():  # each drain hands back to Celery after DRAIN_SECONDS
        pass

    assert Run.objects.get(event_type="test:many-sends").status == RunStatus.SUCCEEDED
    assert Event.objects.filter(type="test:downstream").count() == 2500
    downstream = Run.objects.filter(event_type="test:downstream")
    assert downstream.filter(status=RunStatus.SUCCEEDED).count() == 2500


def test_runs_a_dead_worker_took_for_its_next_batch_are_recovered(batch_of, settings):
    """A worker that commits a batch and dies before running the runs it queued for itself:
    their leases lapse and the sweeper hands them to another worker."""
    batch_of(10)
    sent = [(PendingEvent(uuid7(), "test:batch", {"n": n}), None, None) for n in range(2)]
    with transaction.atomic():
        mine = persist_events(sent, keep=2, token="worker-that-dies")

    later = timezone.now() + timedelta(seconds=settings.HOT["RUN_LEASE_SECONDS"] + 1)
    assert sweeper.recover_expired_leases(later) == 2
    assert executor.drain() == 2

    for run in Run.objects.filter(id__in=[r.id for r in mine]):
        assert run.status == RunStatus.SUCCEEDED and run.recovery_count == 1


def run_among_a_batch(event_type: str) -> Run:
    """Send `event_type` between two batch runs that send downstream, drain, check that the
    neighbours succeeded with their sends, and return the run of `event_type`."""
    send_batch(1, send={"from": "batch"})
    send(event_type, {})
    send_batch(1, send={"from": "batch"})

    executor.drain()

    neighbours = Run.objects.filter(event_type="test:batch")
    assert [run.status for run in neighbours] == [RunStatus.SUCCEEDED] * 2
    assert Event.objects.filter(source_run__in=neighbours).count() == 2
    return Run.objects.get(event_type=event_type, attempt=1)


def test_an_exception_whose_str_raises_fails_its_run_and_not_its_batch(batch_of):
    batch_of(10)

    run = run_among_a_batch("test:unprintable-error")

    assert run.status == RunStatus.FAILED
    assert run.error_type == "tests.handlers.Unprintable"
    assert run.error_message == "<Unprintable.__str__ raised RuntimeError>"
    assert "unprintable_error" in run.error_traceback


def test_nul_characters_and_lone_surrogates_in_an_error_are_stored_escaped(batch_of):
    batch_of(10)

    run = run_among_a_batch("test:unstorable-error")

    assert run.status == RunStatus.FAILED
    assert run.error_message == "nul \\x00 and lone \\ud800 surrogate"
    assert "nul \\x00 and lone \\ud800 surrogate" in run.error_traceback


def test_a_payload_changed_after_send_is_sent_as_it_was_at_send(batch_of):
    batch_of(10)

    run = run_among_a_batch("test:sends-then-changes-it")

    assert run.status == RunStatus.SUCCEEDED
    [sent] = run.sent_events.all()
    assert sent.data == {"items": [1]} and sent.runs.get().input == {"items": [1]}


def test_a_run_whose_outcome_the_database_refuses_fails_alone_without_retry(batch_of, monkeypatch):
    """The last line of defence, for whatever the checks before it miss."""
    batch_of(10)
    monkeypatch.setattr(executor, "check_json", lambda value, what: None)

    run = run_among_a_batch("test:returns-unstorable")

    assert run.status == RunStatus.FAILED and run.next_retry_at is None
    assert run.error_type == "runtime.exceptions.OutcomeNotStored"
    assert "could not be stored" in run.error_message and "surrogate" in run.error_message
    assert run.result is None
    assert Run.objects.filter(event_type="test:returns-unstorable").count() == 1


def test_a_crash_looping_run_spends_only_its_own_recovery_budget(batch_of, settings):
    """A run recovered from a dead worker is claimed alone: when it takes its worker down
    again, no other run is holding a lease beside it."""
    batch_of(10)
    send_batch(4)
    looper = Run.objects.get(input__n=0)  # its handler kills the worker, every time

    def worker_dies() -> None:
        later = timezone.now() + timedelta(seconds=settings.HOT["RUN_LEASE_SECONDS"] + 1)
        sweeper.recover_expired_leases(later)

    assert len(executor.claim_batch("worker-0", 10)) == 4  # the first time, all four go
    worker_dies()
    for n in range(1, settings.HOT["MAX_RECOVERIES"] + 1):
        [claimed] = executor.claim_batch(f"worker-{n}", 10)
        assert claimed.id == looper.id
        worker_dies()

    looper.refresh_from_db()
    assert looper.status == RunStatus.FAILED and looper.error_type == "runtime.sweeper.WorkerLost"
    assert executor.drain() == 3
    for run in Run.objects.exclude(id=looper.id):
        assert run.status == RunStatus.SUCCEEDED and run.recovery_count == 1


def test_runs_the_sweeper_rings_for_again_keep_their_place_in_the_queue(batch_of, settings):
    batch_of(3)
    send_batch(3)
    long_ago = timezone.now() - timedelta(seconds=settings.HOT["REQUEUE_AFTER_SECONDS"] + 60)
    Run.objects.update(created_at=long_ago, queued_at=long_ago)
    for n in range(3, 6):
        send("test:batch", {"n": n})

    assert sweeper.requeue_stale(timezone.now()) == 3

    assert [run.input["n"] for run in executor.claim_batch("worker", 3)] == [0, 1, 2]


def test_a_claimed_run_asked_to_cancel_before_its_claim_is_never_called(batch_of, tmp_path):
    batch_of(10)
    log = tmp_path / "executions.log"
    send_batch(3, log=str(log))
    victim = Run.objects.get(input__n=1)
    # A cancel request that lands between the sweeper re-queueing a run and a worker claiming it.
    Run.objects.filter(id=victim.id).update(cancel_requested_at=timezone.now())

    executor.drain()

    victim.refresh_from_db()
    assert victim.status == RunStatus.CANCELLED and victim.started_at is None
    assert str(victim.id) not in log.read_text().split()
    assert Run.objects.filter(status=RunStatus.SUCCEEDED).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_run_cancelled_while_it_waits_its_turn_in_a_batch_is_never_called(
    batch_of, settings, tmp_path
):
    batch_of(10)
    # The keeper looks every 0.5 s. Untraced: a traced run would also stop at its first call.
    settings.HOT = {**settings.HOT, "RUN_LEASE_SECONDS": 1.5, "TRACE": False}
    log = tmp_path / "executions.log"
    send("test:cancels-a-neighbour", {"n": 1})
    send_batch(2, log=str(log))

    assert executor.drain() == 3

    victim = Run.objects.get(event_type="test:batch", input__n=1)
    assert victim.status == RunStatus.CANCELLED and victim.started_at is None
    assert str(victim.id) not in log.read_text().split()
    assert Run.objects.filter(status=RunStatus.SUCCEEDED).count() == 2
