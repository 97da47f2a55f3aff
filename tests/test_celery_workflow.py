"""The workflow through real services: PostgreSQL, Redis and a Celery worker."""

import pytest
from django.db import connection

from hotapp.models import Event, Run, RunStatus
from runtime import send
from tests.conftest import all_terminal, wait_for

pytestmark = pytest.mark.services


def orders(n: int) -> list:
    return [
        send("order:created", {"order_id": i, "items": [{"sku": "tee", "price": 20.0}]})
        for i in range(n)
    ]


def test_the_order_workflow_completes_on_postgres_redis_and_celery(celery_worker, settings):
    settings.HOT = {**settings.HOT, "RETRY_MIN_DELAY_MS": 10}
    event_ids = orders(5)

    wait_for(
        lambda: (
            Run.objects.filter(
                function__endswith="on_order_shipped", status=RunStatus.SUCCEEDED
            ).count()
            == 5
        ),
        timeout=60,
        what="five shipped orders",
    )
    wait_for(all_terminal, what="every run to finish")

    for event_id in event_ids:
        stream = Event.objects.get(id=event_id).stream_id
        runs = Run.objects.filter(stream_id=stream)
        # create (failed + retried), pay, ship: four runs, three events, in one stream
        assert runs.count() == 4
        assert runs.filter(status=RunStatus.SUCCEEDED).count() == 3
        retry = runs.get(attempt=2)
        assert retry.origin_run.status == RunStatus.FAILED
        assert retry.input == retry.origin_run.input
        types = set(Event.objects.filter(stream_id=stream).values_list("type", flat=True))
        assert types == {"order:created", "order:paid", "order:shipped"}


def test_fan_out_through_the_worker_runs_every_handler_once(celery_worker):
    send("test:fanout")

    wait_for(
        lambda: Run.objects.filter(status=RunStatus.SUCCEEDED).count() == 2, what="both handlers"
    )
    assert sorted(Run.objects.values_list("result", flat=True)) == ["first", "second"]


def test_a_failed_attempts_sends_reach_nobody_and_the_retrys_arrive_once(celery_worker):
    send("test:fails-once-after-send")

    wait_for(
        lambda: Run.objects.filter(
            function="tests.handlers.downstream", status=RunStatus.SUCCEEDED
        ).exists(),
        what="the downstream run",
    )
    wait_for(all_terminal, what="every run to finish")

    assert Event.objects.filter(type="test:downstream").count() == 1
    assert Run.objects.get(function="tests.handlers.downstream").input == {"attempt": 2}


def test_exhausted_retries_end_failed_through_the_worker(celery_worker):
    send("test:always-fails")

    wait_for(
        lambda: Run.objects.filter(
            function="tests.handlers.always_fails", attempt=3, status=RunStatus.FAILED
        ).exists(),
        what="the last attempt to fail",
    )
    assert Run.objects.filter(status=RunStatus.FAILED).count() == 3
    assert not Event.objects.filter(type="test:should-not-arrive").exists()


def test_the_worker_reconnects_after_its_database_connections_are_killed(celery_worker):
    send("test:downstream", {"n": 1})
    wait_for(
        lambda: Run.objects.filter(status=RunStatus.SUCCEEDED).count() == 1, what="the first run"
    )

    # What a PostgreSQL restart does to every client: its connections die under it.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    send("test:downstream", {"n": 2})

    wait_for(
        lambda: Run.objects.filter(status=RunStatus.SUCCEEDED).count() == 2,
        what="the run after the connections died",
    )
