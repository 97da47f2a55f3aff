"""The engine's semantics, run in this thread (tests/conftest.py drain()) on PostgreSQL."""

from datetime import timedelta

import pytest
from django.utils import timezone

from hotapp.models import Event, Run, RunStatus, Trigger
from runtime import (
    InvalidTransition,
    RunNotFound,
    cancel_run,
    executor,
    rerun,
    retry_run,
    send,
    sweeper,
)
from runtime.registry import unregister
from tests.conftest import drain

pytestmark = pytest.mark.django_db


def test_the_three_step_workflow_completes_and_its_lineage_is_queryable():
    event_id = send("order:created", {"order_id": 7, "items": [{"sku": "mug", "price": 12.5}]})

    drain()

    created = Event.objects.get(id=event_id)
    charge_attempts = list(created.runs.order_by("attempt"))
    assert [r.status for r in charge_attempts] == [RunStatus.FAILED, RunStatus.SUCCEEDED]
    charged = charge_attempts[-1]
    [paid] = charged.sent_events.all()
    assert paid.type == "order:paid" and paid.data == {"order_id": 7, "amount": 12.5}
    [ship] = paid.runs.all()
    [shipped] = ship.sent_events.all()
    assert shipped.data == {"order_id": 7, "tracking": "TRK000007"}
    [notify] = shipped.runs.all()
    assert notify.status == RunStatus.SUCCEEDED
    assert notify.result == "order 7 shipped, tracking TRK000007"
    # The whole workflow is one stream.
    stream = created.stream_id
    assert Run.objects.filter(stream_id=stream).count() == 4
    assert Event.objects.filter(stream_id=stream).count() == 3


def test_a_flaky_step_is_retried_with_the_same_input_and_linked_to_its_origin():
    send("order:created", {"order_id": 8, "items": []})

    drain()

    first, retry = Run.objects.filter(function__endswith="on_order_created").order_by("attempt")
    assert first.attempt == 1 and first.status == RunStatus.FAILED
    assert first.error_type == "hotapp.demo.handlers.PaymentDeclined"
    assert "card network timed out" in first.error_message
    assert "charge_payment" in first.error_traceback
    assert first.next_retry_at is not None
    assert retry.attempt == 2 and retry.status == RunStatus.SUCCEEDED
    assert retry.origin_run_id == first.id
    assert retry.input == first.input
    assert retry.event_id == first.event_id and retry.stream_id == first.stream_id


def test_exhausted_retries_end_failed_and_a_failed_attempt_sends_nothing():
    send("test:always-fails")

    drain()

    attempts = list(Run.objects.filter(function="tests.handlers.always_fails").order_by("attempt"))
    assert [(r.attempt, r.status) for r in attempts] == [
        (1, RunStatus.FAILED),
        (2, RunStatus.FAILED),
        (3, RunStatus.FAILED),
    ]
    origin = attempts[0]
    assert all(r.origin_run_id == origin.id for r in attempts[1:])
    assert attempts[-1].next_retry_at is None  # the last one was not scheduled again
    assert not Event.objects.filter(type="test:should-not-arrive").exists()


def test_a_retry_sends_what_the_failed_attempt_did_not_exactly_once():
    send("test:fails-once-after-send")

    drain()

    [event] = Event.objects.filter(type="test:downstream")
    assert event.data == {"attempt": 2}
    assert event.source_run.attempt == 2
    [run] = event.runs.all()
    assert run.status == RunStatus.SUCCEEDED


def test_a_second_delivery_of_the_same_run_does_nothing():
    send("test:downstream", {"n": 1})
    run = Run.objects.get()

    executor.execute(run.id)
    run.refresh_from_db()
    finished_at = run.finished_at
    executor.execute(run.id)

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.finished_at == finished_at


def test_a_run_whose_handler_is_not_registered_fails_with_a_clear_error():
    send("test:fanout")
    unregister("tests.handlers.fanout_second")
    try:
        drain()
    finally:
        import importlib

        import tests.handlers

        importlib.reload(tests.handlers)

    run = Run.objects.get(function="tests.handlers.fanout_second")
    assert run.status == RunStatus.FAILED
    assert run.error_type == "runtime.exceptions.HandlerNotFound"
    assert "tests.handlers.fanout_second" in run.error_message


def test_a_result_that_is_not_json_fails_the_run_without_retrying():
    send("test:bad-result")

    drain()

    run = Run.objects.get(function="tests.handlers.bad_result")
    assert run.status == RunStatus.FAILED
    assert run.error_type == "runtime.exceptions.PayloadError"


def test_a_failed_run_can_be_retried_by_hand_with_the_same_input():
    send("test:always-fails", {"k": "v"})
    drain()
    last = Run.objects.filter(function="tests.handlers.always_fails").order_by("-attempt").first()

    retried = retry_run(last.id)

    assert retried.status == RunStatus.QUEUED
    assert retried.attempt == 4
    assert retried.origin_run_id == last.origin_run_id
    assert retried.input == {"k": "v"}


def test_an_attempt_cannot_be_retried_twice():
    send("test:always-fails")
    drain()
    first = Run.objects.get(function="tests.handlers.always_fails", attempt=1)

    with pytest.raises(InvalidTransition, match="already retried"):
        retry_run(first.id)


def test_only_failed_runs_can_be_retried():
    send("test:downstream")
    drain()

    with pytest.raises(InvalidTransition, match="succeeded"):
        retry_run(Run.objects.get().id)


def test_a_rerun_is_a_fresh_run_in_a_new_stream():
    send("test:downstream", {"a": 1})
    drain()
    original = Run.objects.get()

    fresh = rerun(original.id)

    assert fresh.trigger == Trigger.MANUAL
    assert fresh.rerun_of_id == original.id
    assert fresh.origin_run_id is None and fresh.attempt == 1
    assert fresh.stream_id != original.stream_id
    assert fresh.input == {"a": 1}
    drain()
    fresh.refresh_from_db()
    assert fresh.status == RunStatus.SUCCEEDED and fresh.result == {"a": 1}


def test_an_unfinished_run_cannot_be_rerun():
    send("test:downstream")

    with pytest.raises(InvalidTransition, match="queued"):
        rerun(Run.objects.get().id)


def test_a_queued_run_is_cancelled_at_once_and_never_runs():
    send("test:downstream")
    run = Run.objects.get()

    assert cancel_run(run.id) == RunStatus.CANCELLED
    drain()

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.started_at is None


def test_a_pending_retry_is_cancelled_and_no_further_attempt_is_made():
    send("test:always-fails")
    executor.execute(Run.objects.get().id)
    run = Run.objects.get()
    assert run.status == RunStatus.PENDING_RETRY

    assert cancel_run(run.id) == RunStatus.CANCELLED
    drain()

    assert Run.objects.count() == 1
    assert Run.objects.get().status == RunStatus.CANCELLED


def test_a_finished_run_cannot_be_cancelled():
    send("test:downstream")
    drain()

    with pytest.raises(InvalidTransition, match="succeeded"):
        cancel_run(Run.objects.get().id)


@pytest.mark.parametrize("action", [retry_run, rerun, cancel_run])
def test_a_malformed_or_unknown_run_id_is_a_clear_error(action):
    with pytest.raises(RunNotFound, match="not a run id"):
        action("not-a-uuid")
    with pytest.raises(RunNotFound, match="No run has id"):
        action("01a21355-c8e0-72c9-b9ac-b495e523e77a")


def test_a_run_asked_to_cancel_whose_worker_died_ends_cancelled_not_requeued():
    send("test:downstream")
    run = Run.objects.get()
    assert executor.claim(run.id, "dead-worker")
    assert cancel_run(run.id) == RunStatus.RUNNING
    Run.objects.filter(id=run.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert sweeper.sweep()["recovered"] == 1

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.recovery_count == 0


def test_a_run_whose_worker_keeps_dying_ends_failed_with_worker_lost(settings):
    send("test:downstream")
    run = Run.objects.get()
    for _ in range(settings.HOT["MAX_RECOVERIES"] + 1):
        assert executor.claim(run.id, "dying-worker")
        Run.objects.filter(id=run.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        sweeper.sweep()

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error_type == "runtime.sweeper.WorkerLost"
    assert run.recovery_count == settings.HOT["MAX_RECOVERIES"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("via", ["to_thread", "sync_to_async"])
def test_an_async_handler_sending_from_a_thread_sends_nothing_when_it_fails(via):
    send("test:async-sends-from-a-thread", {"via": via, "fail": True})

    drain()

    assert Run.objects.get(event_type="test:async-sends-from-a-thread").status == RunStatus.FAILED
    assert not Event.objects.filter(type="test:downstream").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("via", ["to_thread", "sync_to_async"])
def test_an_async_handler_sending_from_a_thread_sends_with_its_success(via):
    send("test:async-sends-from-a-thread", {"via": via})

    drain()

    run = Run.objects.get(event_type="test:async-sends-from-a-thread")
    [sent] = Event.objects.filter(type="test:downstream")
    assert sent.source_run == run and sent.stream_id == run.stream_id


def test_the_idempotency_key_is_the_same_across_retries_and_new_on_a_rerun():
    send("test:keyed-side-effect")
    drain()
    first, retried = Run.objects.filter(event_type="test:keyed-side-effect").order_by("attempt")
    assert first.error_message == retried.result == f"hot:{first.id}"

    fresh = rerun(retried.id)
    drain()

    fresh_retry = Run.objects.get(origin_run=fresh)
    assert fresh_retry.result == f"hot:{fresh.id}" != retried.result
