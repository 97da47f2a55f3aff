"""Live updates over the websocket (hotapp/consumers.py), through the Redis channel layer."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.utils import timezone

from hotapp.consumers import MAX_ROWS, LiveConsumer
from hotapp.models import Run
from runtime import executor, send

pytestmark = pytest.mark.services


def connect(user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
    communicator.scope["user"] = user
    return communicator


def run_async(scenario):
    return async_to_sync(scenario)()


def test_an_anonymous_socket_is_refused(transactional_db):
    async def scenario():
        communicator = connect(AnonymousUser())
        connected, code = await communicator.connect()
        assert not connected and code == 4401

    run_async(scenario)


def test_a_new_run_reaches_the_runs_list_as_a_rendered_row(transactional_db, redis_client, alice):
    async def scenario():
        communicator = connect(alice)
        assert (await communicator.connect())[0]
        cursor = timezone.now().isoformat()
        await communicator.send_json_to({"subscribe": "runs", "query": "", "cursor": cursor})
        await database_sync_to_async(send)("test:downstream", {"n": 1})
        message = await communicator.receive_json_from(timeout=5)
        run = await database_sync_to_async(Run.objects.get)()
        assert message["type"] == "runs"
        [row] = message["rows"]
        assert row["id"] == str(run.id)
        assert f'<tr id="run-{run.id}"' in row["html"] and "status-queued" in row["html"]

        # The same row again when its status changes.
        await database_sync_to_async(executor.execute)(run.id)
        message = await communicator.receive_json_from(timeout=5)
        assert "status-succeeded" in message["rows"][0]["html"]
        await communicator.disconnect()

    run_async(scenario)


def test_changed_runs_outside_the_filters_are_reported_gone_not_shown(
    transactional_db, redis_client, alice
):
    async def scenario():
        communicator = connect(alice)
        await communicator.connect()
        await communicator.send_json_to(
            {"subscribe": "runs", "query": "status=failed", "cursor": timezone.now().isoformat()}
        )
        await database_sync_to_async(send)("test:downstream")
        message = await communicator.receive_json_from(timeout=5)
        run = await database_sync_to_async(Run.objects.get)()
        assert message["rows"] == [] and message["gone"] == [str(run.id)]
        await communicator.disconnect()

    run_async(scenario)


def test_a_burst_of_changes_sends_the_newest_rows_first_then_the_rest_without_a_ring(
    transactional_db, redis_client, alice
):
    def burst():
        with transaction.atomic():  # one commit: one ring
            for n in range(MAX_ROWS + 5):
                send("test:downstream", {"n": n})

    async def scenario():
        communicator = connect(alice)
        await communicator.connect()
        await communicator.send_json_to(
            {"subscribe": "runs", "query": "", "cursor": timezone.now().isoformat()}
        )
        await database_sync_to_async(burst)()
        first = await communicator.receive_json_from(timeout=5)
        assert first["type"] == "runs" and first["more"] is True
        assert len(first["rows"]) == MAX_ROWS
        # The rest follows on its own: the burst's commit rang only once.
        rest = await communicator.receive_json_from(timeout=5)
        assert rest["type"] == "runs" and rest["more"] is False
        assert len(rest["rows"]) == 5

        stamps = dict(
            await database_sync_to_async(list)(Run.objects.values_list("id", "updated_at"))
        )
        first_ids = {row["id"] for row in first["rows"]}
        rest_ids = {row["id"] for row in rest["rows"]}
        assert first_ids | rest_ids == {str(i) for i in stamps} and not first_ids & rest_ids
        newest_left = max(u for i, u in stamps.items() if str(i) in rest_ids)
        assert all(stamps[i] >= newest_left for i in stamps if str(i) in first_ids)
        assert await communicator.receive_nothing(timeout=0.5)

        # A later change is sent alone: re-reading the burst (still within the overlap window)
        # neither sends it again nor counts it against the batch.
        await database_sync_to_async(send)("test:downstream", {"n": "late"})
        late = await communicator.receive_json_from(timeout=5)
        [row] = late["rows"]
        assert row["id"] not in first_ids | rest_ids and late["more"] is False
        await communicator.disconnect()

    run_async(scenario)


def test_a_reconnecting_page_catches_up_from_its_cursor(transactional_db, redis_client, alice):
    async def scenario():
        before = timezone.now().isoformat()
        await database_sync_to_async(send)("test:downstream")  # while the page was offline
        communicator = connect(alice)
        await communicator.connect()
        await communicator.send_json_to({"subscribe": "runs", "query": "", "cursor": before})
        message = await communicator.receive_json_from(timeout=5)
        assert len(message["rows"]) == 1
        await communicator.disconnect()

    run_async(scenario)


def test_a_run_page_hears_about_changes_in_its_workflow(transactional_db, redis_client, alice):
    async def scenario():
        await database_sync_to_async(send)("order:created", {"order_id": 3, "items": []})
        run = await database_sync_to_async(Run.objects.get)()
        communicator = connect(alice)
        await communicator.connect()
        await communicator.send_json_to(
            {"subscribe": "run", "run": str(run.id), "cursor": run.updated_at.isoformat()}
        )
        # The page shows the run as it is: nothing to say until it changes.
        assert await communicator.receive_nothing(timeout=0.5)
        await database_sync_to_async(executor.execute)(run.id)
        message = await communicator.receive_json_from(timeout=5)
        assert message["type"] == "run"
        await communicator.disconnect()

    run_async(scenario)


def test_a_subscription_to_an_unknown_run_gets_an_error(transactional_db, alice):
    async def scenario():
        communicator = connect(alice)
        await communicator.connect()
        await communicator.send_json_to({"subscribe": "run", "run": "nope"})
        assert (await communicator.receive_json_from(timeout=5))["type"] == "error"
        await communicator.disconnect()

    run_async(scenario)
