"""Flow control as handler options (runtime.flow, runtime.flow_claim): concurrency and rate
limits per key, debounce and priority, enforced in the database across real workers."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from hotapp.models import Run, RunStatus, WaitReason
from runtime import executor, flow, holds, on_event, registry, send
from runtime.flow_claim import RECHECK_SECONDS, claim_flow
from runtime.transitions import transition
from tests.conftest import all_terminal, drain, wait_for
from tests.flow_handlers import store

pytestmark = pytest.mark.django_db

LIMITED = "tests.flow_handlers.one_at_a_time"


def runs_of(event_type: str) -> list[Run]:
    return list(Run.objects.filter(event_type=event_type).order_by("created_at", "id"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency= must be a whole number of at least 1"),
        ({"concurrency": "2"}, "concurrency= must be a whole number"),
        ({"rate_limit": "10 per minute"}, 'rate_limit= takes "N/s"'),
        ({"rate_limit": "0/m"}, "at least 1 run"),
        ({"debounce": "soon"}, 'debounce= takes a duration like "5s"'),
        ({"debounce": 0}, "debounce= must be a positive duration"),
        ({"concurrency": 1, "key": "customer_id"}, "dotted path into the event"),
        ({"key": "data.customer_id"}, "key= needs concurrency=, rate_limit= or debounce="),
        ({"priority": 1.5}, "priority= takes a number"),
        ({"priority": 40000}, "priority= must be between"),
    ],
)
def test_flow_options_are_checked_when_the_handler_is_decorated(options, message):
    with pytest.raises(ValueError, match=message):
        on_event("flow:bad", **options)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("10/m", (10, 60)), ("5/s", (5, 1)), ("100/h", (100, 3600)), ("3/10s", (3, 10))],
)
def test_a_rate_limit_reads_as_runs_per_window(text, parsed):
    assert flow.parse_rate(text) == parsed


def test_the_key_is_the_events_value_at_the_path_and_empty_when_it_is_missing():
    limits = flow.flow_control(concurrency=1, key="data.customer.id", priority="data.p")
    assert flow.columns(limits, "e", "t", {"customer": {"id": "c-7"}, "p": 3}) == ("c-7", 3)
    assert flow.columns(limits, "e", "t", {"customer": {"id": 7}}) == ("7", 0)
    assert flow.columns(limits, "e", "t", {}) == ("", 0)
    assert flow.columns(flow.NO_FLOW, "e", "t", {"customer": 1}) == (None, 0)


def test_a_handler_without_flow_control_keeps_the_fast_path():
    send("test:downstream", {"n": 1})
    run = Run.objects.get()
    assert (run.flow_key, run.priority) == (None, 0)
    assert [r.id for r in executor.claim_batch("w", 10)] == [run.id]


def test_a_flow_controlled_run_is_never_claimed_by_the_fast_path():
    send("flow:one-at-a-time", {"key": "a"})
    run = Run.objects.get()
    assert run.flow_key == "a"
    assert executor.claim_batch("w", 10) == [] and executor.claim(run.id, "w") == []
    assert [r.id for r in claim_flow("w", 10)] == [run.id]


def test_a_concurrency_limit_counts_per_key_so_other_keys_run_meanwhile():
    for key in ("a", "a", "a", "b"):
        send("flow:one-at-a-time", {"key": key})
    first_a, second_a, third_a, only_b = runs_of("flow:one-at-a-time")

    claimed = claim_flow("w", 10)

    assert {r.id for r in claimed} == {first_a.id, only_b.id}
    for waiting in (second_a, third_a):
        waiting.refresh_from_db()
        assert (waiting.status, waiting.wait_reason) == (RunStatus.QUEUED, WaitReason.CONCURRENCY)
    # Nothing more fits while they run, however often a worker asks.
    assert claim_flow("w", 10) == []

    # The run that finishes lets the next of its key go in the same transaction.
    executor._run_batch([r for r in claimed if r.id == first_a.id], "w")
    second_a.refresh_from_db()
    assert (second_a.wait_reason, second_a.available_at) == ("", None)
    assert [r.id for r in claim_flow("w", 10)] == [second_a.id]
    third_a.refresh_from_db()
    assert third_a.wait_reason == WaitReason.CONCURRENCY


def test_a_run_that_ends_without_a_completion_lets_the_next_one_go_after_the_recheck():
    send("flow:one-at-a-time", {"key": "a"})
    send("flow:one-at-a-time", {"key": "a"})
    first, second = runs_of("flow:one-at-a-time")
    claim_flow("w", 10)
    # Forced to an end by the sweeper (a cancel past its grace): no completion frees the slot.
    transition(Run.objects.filter(id=first.id), status=RunStatus.CANCELLED)

    assert holds.release_due() == 0
    later = timezone.now() + timedelta(seconds=RECHECK_SECONDS + 1)
    assert holds.release_due(later) == 1
    assert [r.id for r in claim_flow("w", 10)] == [second.id]


def test_priority_orders_the_queue_then_age():
    for priority in (0, 5, -1, 5):
        send("flow:prioritised", {"priority": priority})
    claimed = executor.claim_batch("w", 10)
    assert [r.input["priority"] for r in claimed] == [5, 5, 0, -1]
    assert claimed[0].created_at <= claimed[1].created_at


def test_priority_orders_the_runs_waiting_for_a_key():
    for priority in (0, 9, 3):
        send("flow:one-at-a-time", {"key": "k", "priority": priority})
    order = []
    while runs := claim_flow("w", 10):
        order += [r.input["priority"] for r in runs]
        executor._run_batch(runs, "w")
    assert order == [9, 3, 0]


def test_debounce_runs_once_with_the_last_events_data():
    for n in range(5):
        send("flow:debounced", {"key": "k", "n": n})
    send("flow:debounced", {"key": "other", "n": 99})
    runs = runs_of("flow:debounced")
    replaced, survivor, other = runs[:4], runs[4], runs[5]

    for run in replaced:
        run.refresh_from_db()
        assert (run.status, run.error_type) == (RunStatus.CANCELLED, "Debounced")
        assert "Replaced by a later event" in run.error_message
    assert str(survivor.event_id) in replaced[-1].error_message
    for run in (survivor, other):
        run.refresh_from_db()
        assert (run.status, run.wait_reason) == (RunStatus.QUEUED, WaitReason.DEBOUNCE)
    drain()
    assert Run.objects.filter(status=RunStatus.SUCCEEDED).count() == 0  # still debouncing

    holds.release_due(timezone.now() + timedelta(seconds=2))
    drain()
    survivor.refresh_from_db()
    other.refresh_from_db()
    assert survivor.status == RunStatus.SUCCEEDED and survivor.result == {"key": "k", "n": 4}
    assert other.result == {"key": "other", "n": 99}


@pytest.mark.django_db(transaction=True)
def test_senders_debouncing_one_key_at_once_leave_one_run():
    barrier = threading.Barrier(8)

    def sender(n):
        barrier.wait()
        try:
            send("flow:debounced", {"key": "k", "n": n})
        finally:
            connection.close()

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    runs = runs_of("flow:debounced")
    assert len(runs) == 8
    assert [r.status for r in runs].count(RunStatus.QUEUED) == 1
    assert {r.error_type for r in runs if r.status == RunStatus.CANCELLED} == {"Debounced"}


def test_a_retry_of_a_flow_controlled_run_keeps_its_key_and_limit():
    send("flow:flaky", {})
    drain()
    first, second = runs_of("flow:flaky")
    assert (first.status, first.flow_key) == (RunStatus.FAILED, "")
    assert (second.status, second.flow_key, second.attempt) == (RunStatus.SUCCEEDED, "", 2)


def test_a_held_run_shows_why_on_its_page_and_in_the_list(alice_client):
    send("flow:one-at-a-time", {"key": "a"})
    send("flow:one-at-a-time", {"key": "a"})
    claim_flow("w", 10)
    waiting = Run.objects.get(status=RunStatus.QUEUED)

    page = alice_client.get(f"/runs/{waiting.id}/").content.decode()
    assert "concurrency limit is reached" in page
    listing = alice_client.get("/").content.decode()
    assert (
        'hold-concurrency" title="Its handler&#x27;s concurrency limit is reached">concurrency<'
        in listing
    )


def flow_registered() -> list[str]:
    return [h.name for h in registry.flow_limited()]


def test_the_registry_lists_the_flow_controlled_handlers():
    assert LIMITED in flow_registered()
    assert "tests.flow_handlers.prioritised" not in flow_registered()


@pytest.mark.services
def test_four_workers_keep_two_runs_per_customer_and_run_every_event_once(
    worker_process, redis_client
):
    store().delete(*store().keys("flow:*") or ["flow:none"])
    for n in range(36):
        send("flow:concurrent", {"customer": f"c{n % 3}", "n": n, "sleep": 0.1})
    for _ in range(4):
        worker_process()

    def finished():
        holds.release_due()  # the scheduler's part
        return all_terminal()

    wait_for(finished, timeout=90, what="36 limited runs to finish")
    assert Run.objects.filter(status=RunStatus.SUCCEEDED).count() == 36
    ran = {int(n): int(count) for n, count in store().hgetall("flow:ran").items()}
    assert ran == dict.fromkeys(range(36), 1)
    for customer in ("c0", "c1", "c2"):
        peaks = [int(p) for p in store().lrange(f"flow:peaks:{customer}", 0, -1)]
        assert len(peaks) == 12 and max(peaks) <= 2


@pytest.mark.services
def test_a_rate_limit_holds_across_four_workers(worker_process, redis_client):
    store().delete(*store().keys("flow:*") or ["flow:none"])
    for n in range(9):
        send("flow:rated", {"n": n})
    for _ in range(4):
        worker_process()

    def finished():
        holds.release_due()  # the scheduler's part: rate-limited runs are held until due
        return all_terminal()

    wait_for(finished, timeout=60, what="9 rate-limited runs to finish")
    ran = {int(n): int(count) for n, count in store().hgetall("flow:rated").items()}
    assert ran == dict.fromkeys(range(9), 1)
    starts = sorted(float(s) for s in store().lrange("flow:starts", 0, -1))
    # At most 3 claims in any 2-second window: the 4th after any claim is 2 s later or more.
    assert all(later - earlier >= 2.0 for earlier, later in zip(starts, starts[3:], strict=False))
