"""Durable waits in tasks: ctx.sleep() and ctx.wait_for_event() suspend the task without holding a
worker, survive a worker's death, and resume it from the top with the waits already done."""

import json
import logging
import os
import re
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from hotapp.models import Event, Run, RunStatus, Task, TaskStatus, TaskWait, WaitOutcome
from runtime import holds, send, start, waits
from tests import task_handlers
from tests.conftest import drain, on_sqlite, wait_for


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def time_passes(seconds: float) -> None:
    """Move every open wait and hold `seconds` into the past, as if that time had gone by."""
    shift = timedelta(seconds=seconds)
    for wait in TaskWait.objects.filter(resolved_at=None):
        TaskWait.objects.filter(id=wait.id).update(
            created_at=wait.created_at - shift, until=wait.until and wait.until - shift
        )
    for run in Run.objects.filter(status=RunStatus.QUEUED).exclude(available_at=None):
        Run.objects.filter(id=run.id).update(available_at=run.available_at - shift)
    for task in Task.objects.exclude(deadline_at=None):
        Task.objects.filter(id=task.id).update(deadline_at=task.deadline_at - shift)


@pytest.mark.django_db
def test_a_sleeping_task_holds_its_run_and_no_worker_until_its_time(tmp_path):
    log = tmp_path / "log"
    handle = start(task_handlers.charges_sleeps_then_ships, {"log": str(log), "seconds": 60})

    drain()

    run = Run.objects.get(task_id=handle.id)
    assert run.status == RunStatus.QUEUED and run.wait_reason == "sleep"
    assert run.claimed_by == "" and run.lease_expires_at is None and run.started_at is None
    assert timedelta(seconds=55) < run.available_at - timezone.now() <= timedelta(seconds=60)
    assert handle.status == TaskStatus.WAITING
    [wait] = TaskWait.objects.filter(task_id=handle.id)
    assert (wait.key, wait.kind, wait.resolved_at) == ("#1", "sleep", None)
    assert holds.release_due() == 0  # not yet

    time_passes(61)
    assert holds.release_due() == 1
    drain()

    assert handle.result(timeout=1) == {"slept": 60}
    assert lines(log) == ["charged", "shipped"]
    wait.refresh_from_db()
    assert wait.outcome == WaitOutcome.WOKE and wait.resolved_at is not None
    assert Run.objects.get(task_id=handle.id).status == RunStatus.SUCCEEDED  # one attempt


@pytest.mark.django_db
def test_a_zero_sleep_returns_at_once_and_is_recorded():
    handle = start(task_handlers.sleeps_zero)
    drain()
    assert handle.result(timeout=1) == "did not stop"
    assert TaskWait.objects.get(task_id=handle.id).outcome == WaitOutcome.WOKE


@pytest.mark.django_db
def test_wait_for_event_takes_the_first_matching_event_sent_after_it_began():
    send("test:paid", {"order": 7, "when": "before the wait"})
    handle = start(task_handlers.waits_for_payment, {"order": 7})
    drain()
    assert handle.status == TaskStatus.WAITING
    assert Run.objects.get(task_id=handle.id).wait_reason == "event"

    send("test:paid", {"order": 8})  # another order's
    send("test:refunded", {"order": 7})  # another type
    assert waits.resolve_events() == 0
    assert handle.status == TaskStatus.WAITING

    paid = send("test:paid", {"order": 7, "amount": 30})
    send("test:paid", {"order": 7, "amount": 99})  # later: not the first
    assert waits.resolve_events() == 1
    run = Run.objects.get(task_id=handle.id)
    assert run.available_at is None and run.wait_reason == ""  # released at once
    drain()

    assert handle.result(timeout=1) == {
        "data": {"order": 7, "amount": 30},
        "type": "test:paid",
    }
    wait = TaskWait.objects.get(task_id=handle.id)
    assert wait.outcome == WaitOutcome.MATCHED and wait.event_id == paid


@pytest.mark.django_db
def test_wait_for_event_returns_none_once_its_timeout_passes():
    handle = start(task_handlers.waits_for_payment, {"order": 1, "timeout": 30})
    drain()
    run = Run.objects.get(task_id=handle.id)
    assert timedelta(seconds=25) < run.available_at - timezone.now() <= timedelta(seconds=30)

    time_passes(31)
    send("test:paid", {"order": 1})  # too late
    assert waits.resolve_events() == 0
    assert holds.release_due() == 1
    drain()

    assert handle.result(timeout=1) is None
    assert TaskWait.objects.get(task_id=handle.id).outcome == WaitOutcome.TIMED_OUT


@pytest.mark.django_db
def test_an_event_sent_before_the_timeout_wins_even_if_the_task_resumes_after_it():
    handle = start(task_handlers.waits_for_payment, {"order": 3, "timeout": 30})
    drain()
    send("test:paid", {"order": 3, "in": "time"})
    time_passes(31)  # no matcher ran meanwhile; the event is now 31 s old, within the wait
    Event.objects.filter(type="test:paid").update(created_at=timezone.now() - timedelta(seconds=31))
    holds.release_due()
    drain()

    assert handle.result(timeout=1) == {"data": {"order": 3, "in": "time"}, "type": "test:paid"}


@pytest.mark.django_db
def test_events_a_task_sent_before_it_waits_are_committed_with_the_suspension():
    handle = start(task_handlers.asks_and_waits_for_the_answer)

    drain()  # the task asks and waits; the handler answers

    assert Event.objects.filter(type="test:question").count() == 1
    assert Run.objects.get(function="tests.task_handlers.answers_questions").status == "succeeded"
    assert waits.resolve_events() == 1
    drain()
    assert handle.result(timeout=1) == {"task": str(handle.id), "answer": 42}
    assert Event.objects.filter(type="test:question").count() == 1  # asked once


@pytest.mark.django_db
def test_a_loop_that_resumes_at_its_round_names_its_waits_by_key(tmp_path):
    log = tmp_path / "log"
    handle = start(task_handlers.polls_three_rounds, {"log": str(log)})
    for _ in range(3):
        drain()
        assert handle.status == TaskStatus.WAITING
        time_passes(31)
        holds.release_due()
    drain()

    assert handle.result(timeout=1) == "polled"
    assert lines(log) == ["round 0", "round 1", "round 2"]
    keys = TaskWait.objects.filter(task_id=handle.id).order_by("id").values_list("key", flat=True)
    assert list(keys) == ["after round 0", "after round 1", "after round 2"]


@pytest.mark.django_db
def test_a_wait_called_differently_on_replay_is_logged(caplog):
    handle = start(task_handlers.waits_for_payment, {"order": 5, "timeout": 30})
    drain()
    TaskWait.objects.filter(task_id=handle.id).update(event_type="test:shipped")
    time_passes(31)
    holds.release_due()
    with caplog.at_level(logging.WARNING, logger="hot.waits"):
        drain()
    assert "was a event for test:shipped when it was recorded" in caplog.text
    assert handle.result(timeout=1) is None


@pytest.mark.django_db
def test_a_task_timeout_counts_its_waits_and_caps_their_hold():
    handle = start(task_handlers.sleeps_past_its_timeout)
    drain()
    task = Task.objects.get(id=handle.id)
    assert Run.objects.get(task_id=handle.id).available_at == task.deadline_at

    time_passes(61)
    holds.release_due()
    drain()

    assert handle.status == TaskStatus.TIMED_OUT
    assert TaskWait.objects.get(task_id=handle.id).outcome == WaitOutcome.ABANDONED


@pytest.mark.django_db
def test_a_waiting_task_is_cancelled_at_once_and_its_wait_abandoned():
    handle = start(task_handlers.waits_for_payment, {"order": 9})
    drain()
    assert Run.objects.get(task_id=handle.id).available_at == waits.FOREVER  # no timeout

    assert handle.cancel() is True

    assert handle.status == TaskStatus.CANCELLED
    assert Run.objects.get(task_id=handle.id).status == RunStatus.CANCELLED
    assert TaskWait.objects.get(task_id=handle.id).outcome == WaitOutcome.ABANDONED
    send("test:paid", {"order": 9})
    assert waits.resolve_events() == 0


@pytest.mark.django_db
def test_bad_waits_are_clear_errors():
    for bad in ({"order": 1, "timeout": -1}, {"order": 1, "timeout": "soon"}):
        handle = start(task_handlers.waits_for_payment, bad)
        drain()
        assert handle.status == TaskStatus.FAILED
        assert not TaskWait.objects.filter(task_id=handle.id).exists()


@pytest.mark.parametrize(
    ("data", "match", "expected"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, True),
        ({"a": 1}, {"a": 2}, False),
        ({"a": {"b": [1, 2, 3], "c": 1}}, {"a": {"b": [3, 1]}}, True),
        ({"a": [1, 2]}, {"a": [4]}, False),
        ({"a": True}, {"a": 1}, False),
        ({"a": 1.0}, {"a": 1}, True),
        ({}, {}, True),
    ],
)
def test_containment_matches_postgresql_on_sqlite(data, match, expected):
    assert waits.contains(data, match) is expected


def scheduler_steps() -> None:
    """What the scheduler's loop does for waits every second."""
    holds.release_due()
    waits.resolve_events()


@pytest.mark.services
def test_a_sleeping_task_leaves_its_only_worker_free_for_other_runs(worker_process, tmp_path):
    worker_process()  # one worker, one run at a time (--pool=solo)
    first = start(
        task_handlers.charges_sleeps_then_ships, {"log": str(tmp_path / "a"), "seconds": 3600}
    )
    wait_for(lambda: first.status == TaskStatus.WAITING, what="the first task to sleep")

    second = start(
        task_handlers.charges_sleeps_then_ships, {"log": str(tmp_path / "b"), "seconds": 3600}
    )
    send("test:downstream", {"while": "two tasks sleep"})

    wait_for(lambda: second.status == TaskStatus.WAITING, what="the second task to sleep too")
    wait_for(
        lambda: Run.objects.filter(function="tests.handlers.downstream", status="succeeded"),
        what="the handler to run while both tasks sleep",
    )
    assert first.status == TaskStatus.WAITING
    time_passes(3601)

    def both_done():
        scheduler_steps()
        return first.status == second.status == TaskStatus.COMPLETED

    wait_for(both_done, what="both tasks to wake and finish")
    assert lines(tmp_path / "a") == lines(tmp_path / "b") == ["charged", "shipped"]


@pytest.mark.services
def test_a_task_sleeping_when_its_worker_is_killed_finishes_on_another_with_no_work_repeated(
    worker_process, tmp_path
):
    log = tmp_path / "log"
    victim = worker_process()
    handle = start(task_handlers.charges_sleeps_then_ships, {"log": str(log), "seconds": 3600})
    wait_for(lambda: handle.status == TaskStatus.WAITING, what="the task to sleep")

    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    worker_process()
    time_passes(3601)

    def done():
        scheduler_steps()
        return handle.status == TaskStatus.COMPLETED

    wait_for(done, what="the task to wake on the new worker and finish")
    assert lines(log) == ["charged", "shipped"]  # the charge before the sleep happened once
    assert handle.result(timeout=1) == {"slept": 3600}


@pytest.mark.services
def test_a_task_asks_a_handler_and_waits_for_its_answer_through_real_workers(worker_process):
    worker_process()
    handle = start(task_handlers.asks_and_waits_for_the_answer)

    def answered():
        scheduler_steps()
        return handle.status == TaskStatus.COMPLETED

    wait_for(answered, what="the question, the answer and the task's end")
    assert handle.result(timeout=1) == {"task": str(handle.id), "answer": 42}
    assert TaskWait.objects.get(task_id=handle.id).outcome == WaitOutcome.MATCHED


@pytest.mark.django_db
def test_the_task_page_and_lists_show_what_a_waiting_task_waits_for(alice_client, tmp_path):
    sleeper = start(
        task_handlers.charges_sleeps_then_ships, {"log": str(tmp_path / "log"), "seconds": 60}
    )
    payer = start(task_handlers.waits_for_payment, {"order": 12})
    drain()

    page = alice_client.get(f"/tasks/{payer.id}/").content.decode()
    assert "task-waiting" in page
    assert (
        "wait for <code>test:paid</code> matching <code>{&quot;order&quot;: 12}</code>, "
        "with no time limit" in page
    )
    assert "no worker is held" in page

    page = alice_client.get(f"/tasks/{sleeper.id}/").content.decode()
    assert re.search(r'class="open-wait">sleep until <time', page)
    time_passes(61)
    holds.release_due()
    drain()
    page = alice_client.get(f"/tasks/{sleeper.id}/").content.decode()
    assert "open-wait" not in page and "Woke" in page  # the history keeps it

    runs = alice_client.get("/").content.decode()
    assert "hold-event" in runs and "no set time" in runs
    assert f'id="task-{payer.id}"' in alice_client.get("/tasks/?status=waiting").content.decode()


def test_the_embedded_default_on_sqlite_sleeps_durably(tmp_path):
    log = tmp_path / "log"
    done = on_sqlite(
        ["-m", "tests.embedded_sleep", str(log)],
        tmp_path,
        HOT_HANDLER_MODULES="tests.handlers,tests.task_handlers",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "result": {"slept": 1},
        "waits": [["#1", "woke"]],
    }
    assert lines(log) == ["charged", "shipped"]


@pytest.mark.django_db
def test_the_matcher_reads_only_new_events_and_its_full_pass_finds_a_late_commit(monkeypatch):
    handle = start(task_handlers.waits_for_payment, {"order": 9, "timeout": 300})
    drain()
    waits.resolve_events()  # this process's matcher now reads only what is new

    paid = send("test:paid", {"order": 9})
    # Stamped 10 s ago, committed only now: behind the incremental pass's margin.
    Event.objects.filter(id=paid).update(created_at=timezone.now() - timedelta(seconds=10))
    TaskWait.objects.filter(task_id=handle.id).update(
        created_at=timezone.now() - timedelta(seconds=20)
    )
    assert waits.resolve_events() == 0

    monkeypatch.setattr(waits, "_next_full_pass", 0.0)  # the periodic full pass is due
    assert waits.resolve_events() == 1
    assert TaskWait.objects.get(task_id=handle.id).event_id == paid


@pytest.mark.django_db
def test_each_new_event_resolves_only_the_waits_its_data_matches():
    waits.resolve_events()  # the next passes read only new events
    first = start(task_handlers.waits_for_payment, {"order": 1, "timeout": 300})
    second = start(task_handlers.waits_for_payment, {"order": 2, "timeout": 300})
    nested = start(task_handlers.waits_for_payment, {"order": {"id": 2}, "timeout": 300})
    drain()

    send("test:paid", {"order": 2})
    send("test:paid", {"order": True})  # not 1: JSON true is not the number 1
    assert waits.resolve_events() == 1
    send("test:paid", {"order": {"id": 2, "lines": 3}})
    assert waits.resolve_events() == 1

    outcomes = dict(TaskWait.objects.values_list("task_id", "outcome"))
    assert outcomes[second.id] == outcomes[nested.id] == WaitOutcome.MATCHED
    assert outcomes[first.id] != WaitOutcome.MATCHED
