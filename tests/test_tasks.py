"""Tasks: checkpoints, resume after a crash or a failure, messages, timeouts, cancellation."""

import json
import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from hotapp.models import Run, RunStatus, Schedule, Task, TaskMessage, TaskStatus, Trigger
from runtime import (
    HandlerNotFound,
    PayloadError,
    TaskFailed,
    dispatch,
    schedules,
    send,
    start,
    sweeper,
)
from runtime.celery_app import app as celery_app
from tests import task_handlers
from tests.conftest import drain, thread_worker, wait_for


def logged(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()]


@pytest.mark.services
def test_starting_a_task_creates_it_and_its_first_attempt_on_the_task_queue(
    transactional_db, redis_client, settings, tmp_path
):
    handle = start(task_handlers.count_items, {"total": 3, "log": str(tmp_path / "log")})
    send("test:downstream")
    dispatch.flush()

    task = Task.objects.get(id=handle.id)
    assert task.status == TaskStatus.QUEUED and task.name == "tests.task_handlers.count_items"
    [run] = task.runs.all()
    assert run.trigger == Trigger.TASK and run.status == RunStatus.QUEUED
    assert handle.status == "queued"
    [task_bell] = doorbells(redis_client, settings.HOT["TASK_QUEUE"])
    assert task_bell["task"] == "hot.execute_task" and str(run.id) in task_bell["argsrepr"]
    [event_bell] = doorbells(redis_client, "celery")  # the handler's, on the event queue
    assert event_bell["task"] == "hot.execute_run"


def doorbells(redis_client, queue: str) -> list[dict]:
    """The headers of the Celery messages waiting in a Redis queue."""
    return [json.loads(raw)["headers"] for raw in redis_client.lrange(queue, 0, -1)]


@pytest.mark.services
def test_a_worker_on_the_event_queue_runs_handlers_while_a_task_worker_is_busy(worker_process):
    worker_process()  # a task worker, one job at a time
    handle = start(task_handlers.waits_for_mail)
    wait_for(lambda: handle.status == TaskStatus.RUNNING, what="the task worker to take the task")

    with event_worker():
        send("test:downstream")
        handled = wait_for(
            lambda: (
                Run.objects.filter(function="tests.handlers.downstream", status="succeeded")
                .values_list("claimed_by", flat=True)
                .first()
            ),
            what="the handler to run beside the task",
        )

    assert f":{os.getpid()}:" in handled  # run by the event-only worker of this process
    assert handle.status == TaskStatus.RUNNING  # the task is still waiting for its mail
    handle.send("done")
    assert handle.result(timeout=20) == "done"


def event_worker():
    """A real Celery worker in a thread of this process that consumes only the event queue."""
    return start_worker(
        celery_app,
        queues=["celery"],
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=30,
    )


@pytest.mark.django_db
def test_a_task_runs_to_completion_and_keeps_every_checkpoint(tmp_path):
    handle = start(task_handlers.count_items, {"total": 12, "log": str(tmp_path / "log")})

    drain()

    assert handle.result(timeout=1) == {"next": 12, "sum": 132}
    assert [c["next"] for c in handle.checkpoints()] == [5, 10]
    task = Task.objects.get(id=handle.id)
    assert task.status == TaskStatus.COMPLETED and task.finished_at is not None


@pytest.mark.django_db
def test_a_failed_attempt_with_retries_left_resumes_from_its_last_checkpoint(tmp_path):
    log = tmp_path / "work.log"
    handle = start(task_handlers.fails_once_midway, {"log": str(log)})

    drain()

    result = handle.result(timeout=1)
    assert result == {"done": list(range(10)), "attempt": 2}
    attempts = list(Run.objects.filter(task_id=handle.id).order_by("attempt"))
    assert [(r.attempt, r.status) for r in attempts] == [(1, "failed"), (2, "succeeded")]
    assert "disk full" in attempts[0].error_message
    items = logged(log)
    assert sorted(set(items)) == list(range(10))
    repeated = sorted({i for i in items if items.count(i) > 1})
    assert repeated == [5, 6]  # only the work since the last checkpoint (after item 4)


@pytest.mark.django_db
def test_inbox_messages_taken_since_the_last_checkpoint_are_handed_out_again_after_a_failure():
    handle = start(task_handlers.fails_after_three_messages)
    for message in ("a", "b", "c"):
        handle.send(message)
    handle.close()

    drain()

    assert handle.result(timeout=1) == {"seen": ["a", "b", "c"], "attempt": 2}
    second = Run.objects.get(task_id=handle.id, attempt=2)
    taken_by = TaskMessage.objects.filter(task_id=handle.id).order_by("id")
    assert [m.consumed_by_id == second.id for m in taken_by] == [False, True, True]


@pytest.mark.django_db
def test_receive_returns_none_when_its_timeout_passes_with_no_message():
    handle = start(task_handlers.receives_with_a_timeout)

    drain()

    assert handle.result(timeout=1) == {"received": None}
    assert not Task.objects.get(id=handle.id).is_inbox_closed


@pytest.mark.django_db
def test_result_raises_timeout_error_while_the_task_is_not_done():
    handle = start(task_handlers.waits_for_mail)

    with pytest.raises(TimeoutError, match="still queued"):
        handle.result(timeout=0.05)


@pytest.mark.django_db
def test_messages_in_and_out_are_kept_and_a_closed_inbox_ends_receive():
    handle = start(task_handlers.echo)
    handle.send("hello")
    handle.send({"n": 2})
    handle.close()

    drain()

    assert handle.result(timeout=1) == {"count": 2}
    assert handle.messages("in") == ["hello", {"n": 2}]
    assert handle.messages("out") == [{"echo": "hello", "n": 1}, {"echo": {"n": 2}, "n": 2}]


@pytest.mark.django_db
def test_a_closed_or_finished_task_takes_no_more_messages():
    handle = start(task_handlers.echo)
    handle.close()

    with pytest.raises(TaskFailed, match="takes no messages"):
        handle.send("too late")


@pytest.mark.django_db
def test_restore_without_a_checkpoint_is_none():
    handle = start(task_handlers.restores_nothing, {"x": 1})
    drain()

    assert handle.result(timeout=1) == {"restored": None, "input": {"x": 1}}


@pytest.mark.django_db
def test_a_task_that_runs_past_its_timeout_ends_timed_out():
    handle = start(task_handlers.runs_too_long)

    drain()

    task = Task.objects.get(id=handle.id)
    assert task.status == TaskStatus.TIMED_OUT
    assert task.error_type == "runtime.exceptions.TaskTimedOut"
    with pytest.raises(TaskFailed, match="timed_out"):
        handle.result(timeout=1)


@pytest.mark.django_db
def test_a_queued_task_is_cancelled_at_once():
    handle = start(task_handlers.waits_for_mail)

    assert handle.cancel() is True

    assert handle.status == TaskStatus.CANCELLED
    assert Run.objects.get(task_id=handle.id).status == RunStatus.CANCELLED
    assert handle.cancel() is False


@pytest.mark.django_db
def test_bad_starts_are_clear_errors():
    with pytest.raises(HandlerNotFound):
        start("no.such.task")
    with pytest.raises(HandlerNotFound):  # an event handler is not a task
        start("tests.handlers.downstream")
    with pytest.raises(PayloadError):
        start(task_handlers.echo, {"when": object()})
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_a_task_started_inside_a_run_exists_only_once_the_run_succeeds():
    schedules.sync()
    Schedule.objects.filter(name="tests.task_handlers.starts_a_task").update(
        last_tick_at=timezone.now() - timedelta(minutes=2)
    )
    schedules.fire_due()
    handler_run = Run.objects.get(function="tests.task_handlers.starts_a_task")
    assert not Task.objects.exists()  # queued: the run has not succeeded yet

    drain()

    handler_run.refresh_from_db()
    assert handler_run.status == RunStatus.SUCCEEDED
    task = Task.objects.get(name="tests.task_handlers.restores_nothing")
    assert task.parent_run_id == handler_run.id and task.stream_id == handler_run.stream_id
    assert task.status == TaskStatus.COMPLETED


@pytest.mark.services
def test_a_task_killed_mid_work_resumes_from_its_checkpoint_repeating_little(
    worker_process, tmp_path, settings
):
    log = tmp_path / "work.log"
    victim = worker_process(HOT_RUN_LEASE_SECONDS="2")
    handle = start(task_handlers.count_items, {"total": 20, "log": str(log), "hang_at": 12})

    wait_for(lambda: log.with_suffix(".hung").exists(), what="the task to reach item 12")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)

    def finished():
        sweeper.sweep()
        return Task.objects.filter(id=handle.id, status=TaskStatus.COMPLETED).exists()

    with thread_worker():
        wait_for(finished, timeout=30, what="the task to resume and complete")

    items = logged(log)
    assert sorted(set(items)) == list(range(20))
    repeated = sorted({i for i in items if items.count(i) > 1})
    assert repeated == [10, 11, 12]  # only the work since the last checkpoint (at 10)
    assert handle.result(timeout=1) == {"next": 20, "sum": 380}
    assert Run.objects.get(task_id=handle.id).recovery_count == 1


@pytest.mark.services
def test_a_running_task_is_cancelled_while_it_waits_for_a_message(celery_worker):
    handle = start(task_handlers.waits_for_mail)
    wait_for(lambda: handle.status == TaskStatus.RUNNING, what="the task to start")

    assert handle.cancel() is True

    wait_for(lambda: handle.status == TaskStatus.CANCELLED, what="the task to stop")
    assert Run.objects.get(task_id=handle.id).status == RunStatus.CANCELLED


@pytest.mark.services
def test_a_running_task_sees_its_cancel_at_its_next_checkpoint(celery_worker):
    handle = start(task_handlers.checkpoints_until_cancelled)
    wait_for(lambda: handle.checkpoints(), what="the task's first checkpoint")

    assert handle.cancel() is True

    wait_for(lambda: handle.status == TaskStatus.CANCELLED, what="the task to stop")
    run = Run.objects.get(task_id=handle.id)
    assert run.status == RunStatus.CANCELLED and run.result is None


@pytest.mark.services
def test_a_task_sends_and_receives_through_a_real_worker(celery_worker):
    handle = start(task_handlers.echo)
    handle.send("ping")
    wait_for(lambda: handle.messages("out"), what="the echo")
    handle.close()

    assert handle.result(timeout=20) == {"count": 1}
    assert handle.messages("out") == [{"echo": "ping", "n": 1}]


@pytest.mark.services
def test_a_task_that_ignores_its_timeout_is_stopped_by_the_sweeper(celery_worker, settings):
    settings.HOT = {**settings.HOT, "CANCEL_GRACE_SECONDS": 0}
    handle = start(task_handlers.ignores_its_timeout)
    wait_for(lambda: handle.status == TaskStatus.RUNNING, what="the task to start")

    def timed_out():
        sweeper.sweep()
        return handle.status == TaskStatus.TIMED_OUT

    wait_for(timed_out, timeout=10, what="the sweeper to time it out")
    assert Run.objects.get(task_id=handle.id).status == RunStatus.FAILED
    task_handlers.release_the_ignorer.set()


@pytest.mark.services
def test_a_running_task_that_ignores_a_cancel_is_cancelled_after_the_grace_period(
    celery_worker, settings
):
    settings.HOT = {**settings.HOT, "CANCEL_GRACE_SECONDS": 0}
    task_handlers.release_the_ignorer.clear()
    handle = start(task_handlers.ignores_its_timeout)
    Task.objects.filter(id=handle.id).update(timeout_seconds=None)
    wait_for(lambda: handle.status == TaskStatus.RUNNING, what="the task to start")
    Task.objects.filter(id=handle.id).update(deadline_at=None)  # only the cancel may stop it

    assert handle.cancel() is True
    sweeper.sweep()

    assert handle.status == TaskStatus.CANCELLED
    assert Run.objects.get(task_id=handle.id).status == RunStatus.CANCELLED
    task_handlers.release_the_ignorer.set()
