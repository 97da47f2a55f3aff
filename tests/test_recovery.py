"""Nothing is lost: a worker killed mid-run, broker messages lost, runs that ignore a cancel."""

import os
import signal
import subprocess
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.db.models import Q

from hotapp.models import Event, Run, RunStatus
from runtime import cancel_run, dispatch, send, sweeper
from tests.conftest import all_terminal, thread_worker, wait_for

pytestmark = pytest.mark.services


def test_a_run_whose_worker_is_killed_mid_run_completes_through_the_sweeper(
    worker_process, tmp_path
):
    log = tmp_path / "executions.log"
    victim = worker_process(HOT_RUN_LEASE_SECONDS="2")
    send("test:crash-once", {"log": str(log)})

    run = wait_for(
        lambda: Run.objects.filter(status=RunStatus.RUNNING).first(),
        what="the worker process to claim the run",
    )
    wait_for(lambda: log.exists(), what="the handler to start")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)

    def recovered():
        sweeper.sweep()
        return Run.objects.filter(
            function="tests.handlers.downstream", status=RunStatus.SUCCEEDED
        ).exists()

    with thread_worker():
        wait_for(recovered, timeout=30, what="the killed run to be recovered and finish")
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert run.result == "recovered"
    assert run.recovery_count == 1
    assert log.read_text().count("start") == 2  # killed once, run again once
    assert Event.objects.filter(type="test:downstream").count() == 1  # sent exactly once


def test_every_run_completes_when_the_broker_loses_its_messages(
    transactional_db, redis_client, settings
):
    settings.HOT = {**settings.HOT, "REQUEUE_AFTER_SECONDS": 0}
    # No worker yet: the doorbells wait in Redis, and FLUSHALL loses every one of them.
    for i in range(5):
        send("order:created", {"order_id": i, "items": []})
    dispatch.flush()
    assert redis_client.llen("celery") >= 1
    redis_client.flushall()

    with thread_worker():

        def finished():
            sweeper.sweep()
            return (
                Run.objects.filter(
                    function__endswith="on_order_shipped", status=RunStatus.SUCCEEDED
                ).count()
                == 5
            )

        wait_for(finished, timeout=60, what="every order to ship")
        wait_for(all_terminal, what="every run to finish")


def test_a_running_handler_that_checks_for_cancellation_ends_cancelled(celery_worker):
    send("test:cooperative")
    run = wait_for(
        lambda: Run.objects.filter(status=RunStatus.RUNNING).first(), what="the run to start"
    )

    assert cancel_run(run.id) == RunStatus.RUNNING

    wait_for(
        lambda: Run.objects.filter(id=run.id, status=RunStatus.CANCELLED).exists(),
        what="the handler to see the cancel request",
    )
    run.refresh_from_db()
    assert run.result is None and run.finished_at is not None


def test_a_running_run_that_ignores_a_cancel_is_cancelled_after_the_grace_period(
    worker_process, settings, tmp_path
):
    worker_process()
    send("test:crash-once", {"log": str(tmp_path / "log")})  # sleeps without checking
    run = wait_for(
        lambda: Run.objects.filter(status=RunStatus.RUNNING).first(), what="the run to start"
    )
    settings.HOT = {**settings.HOT, "CANCEL_GRACE_SECONDS": 0}

    cancel_run(run.id)
    sweeper.sweep()

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert not Run.objects.filter(~Q(id=run.id)).exists()


def redis_server(action: str) -> None:
    """Stop or start the real Redis server the suite uses, as .ci/run starts it."""
    port = str(urlparse(settings.REDIS_URL).port or 6379)
    if action == "stop":
        subprocess.run(
            ["redis-cli", "-p", port, "shutdown", "nosave"], capture_output=True, timeout=10
        )
        return
    for folder in ("/var/lib/redis", "/var/log/redis"):
        os.makedirs(folder, exist_ok=True)
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            port,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ],
        check=True,
        timeout=10,
    )
    wait_for(
        lambda: (
            subprocess.run(["redis-cli", "-p", port, "ping"], capture_output=True).stdout.strip()
            == b"PONG"
        ),
        timeout=10,
        what="redis to come back",
    )


def test_a_send_while_the_broker_is_down_is_kept_and_runs_once_it_is_back(celery_worker, settings):
    settings.HOT = {**settings.HOT, "REQUEUE_AFTER_SECONDS": 0}
    redis_server("stop")
    try:
        event_id = send("test:downstream", {"while": "redis was down"})  # does not raise
        run = Run.objects.get(event_id=event_id)
        assert run.status == RunStatus.QUEUED
    finally:
        redis_server("start")

    def finished():
        sweeper.sweep()
        return Run.objects.filter(id=run.id, status=RunStatus.SUCCEEDED).exists()

    wait_for(finished, timeout=60, what="the run to complete after the broker came back")
