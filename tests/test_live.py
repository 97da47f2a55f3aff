"""Live updates over the websocket (hotapp/consumers.py), through the Redis channel layer."""

from datetime import timedelta
from unittest.mock import ANY

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.utils import timezone

from hotapp.consumers import MAX_CATCH_UP, MAX_ROWS, LiveConsumer
from hotapp.filters import row_key
from hotapp.models import Run
from runtime import executor, send
from runtime.live import GROUP

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
        assert message["type"] == "update"
        [row] = message["rows"]
        assert row["id"] == f"run-{run.id}" and row["key"] == row_key(run.created_at, run.id)
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
        assert message["rows"] == [] and message["gone"] == [f"run-{run.id}"]
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
        assert first["type"] == "update" and first["more"] is True
        assert len(first["rows"]) == MAX_ROWS
        # The rest follows on its own: the burst's commit rang only once.
        rest = await communicator.receive_json_from(timeout=5)
        assert rest["type"] == "update" and rest["more"] is False
        assert len(rest["rows"]) == 5

        stamps = dict(
            await database_sync_to_async(list)(Run.objects.values_list("id", "updated_at"))
        )
        first_ids = {row["id"].removeprefix("run-") for row in first["rows"]}
        rest_ids = {row["id"].removeprefix("run-") for row in rest["rows"]}
        assert first_ids | rest_ids == {str(i) for i in stamps} and not first_ids & rest_ids
        newest_left = max(u for i, u in stamps.items() if str(i) in rest_ids)
        assert all(stamps[i] >= newest_left for i in stamps if str(i) in first_ids)
        assert await communicator.receive_nothing(timeout=0.5)

        # A later change is sent alone: re-reading the burst (still within the overlap window)
        # neither sends it again nor counts it against the batch.
        await database_sync_to_async(send)("test:downstream", {"n": "late"})
        late = await communicator.receive_json_from(timeout=5)
        [row] = late["rows"]
        assert row["id"].removeprefix("run-") not in first_ids | rest_ids
        assert late["more"] is False
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
            {"subscribe": "run", "key": str(run.id), "cursor": run.updated_at.isoformat()}
        )
        # The page shows the run as it is: nothing to say until it changes.
        assert await communicator.receive_nothing(timeout=0.5)
        await database_sync_to_async(executor.execute)(run.id)
        message = await communicator.receive_json_from(timeout=5)
        assert message["type"] == "reload"
        await communicator.disconnect()

    run_async(scenario)


def test_a_subscription_to_an_unknown_run_gets_an_error(transactional_db, alice):
    async def scenario():
        communicator = connect(alice)
        await communicator.connect()
        await communicator.send_json_to({"subscribe": "run", "key": "nope"})
        assert (await communicator.receive_json_from(timeout=5))["type"] == "error"
        await communicator.disconnect()

    run_async(scenario)


async def ring() -> None:
    """The doorbell runtime.live rings after a commit."""
    await get_channel_layer().group_send(GROUP, {"type": "runs.changed"})


def stamp(run_id, when) -> None:
    """A committed change of a run, stamped `when` (as a worker that read the clock then)."""
    Run.objects.filter(id=run_id).update(updated_at=when)


def test_a_run_page_hears_of_a_change_stamped_before_the_newest_it_was_told_of(
    transactional_db, redis_client, alice
):
    """Two workers of a fan-out: the later stamp commits first, the earlier one after it."""

    async def scenario():
        await database_sync_to_async(send)("test:fanout")
        first, second = await database_sync_to_async(list)(Run.objects.order_by("function"))
        communicator = connect(alice)
        await communicator.connect()
        cursor = max(first.updated_at, second.updated_at)
        await communicator.send_json_to(
            {"subscribe": "run", "key": str(first.id), "cursor": cursor.isoformat(), "sub": 1}
        )
        assert await communicator.receive_nothing(timeout=0.3)

        late = timezone.now()
        await database_sync_to_async(stamp)(second.id, late + timedelta(milliseconds=500))
        await ring()
        assert (await communicator.receive_json_from(timeout=5))["type"] == "reload"
        await database_sync_to_async(stamp)(first.id, late)  # stamped earlier, committed later
        await ring()
        assert (await communicator.receive_json_from(timeout=5))["type"] == "reload"
        await ring()  # nothing new since
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()

    run_async(scenario)


def test_a_task_page_hears_of_a_change_stamped_before_the_newest_it_was_told_of(
    transactional_db, redis_client, alice
):
    from runtime import start
    from tests import task_handlers

    async def scenario():
        handle = await database_sync_to_async(start)(task_handlers.echo)
        task = await database_sync_to_async(Run.objects.get)(task_id=handle.id)
        communicator = connect(alice)
        await communicator.connect()
        await communicator.send_json_to(
            {"subscribe": "task", "key": str(handle.id), "cursor": timezone.now().isoformat()}
        )
        late = timezone.now()

        def stamp_task(when):
            from hotapp.models import Task

            Task.objects.filter(id=handle.id).update(updated_at=when)

        await database_sync_to_async(stamp_task)(late + timedelta(milliseconds=500))
        await ring()
        assert (await communicator.receive_json_from(timeout=5))["type"] == "reload"
        await database_sync_to_async(stamp)(task.id, late)  # its attempt, stamped earlier
        await ring()
        assert (await communicator.receive_json_from(timeout=5))["type"] == "reload"
        await communicator.disconnect()

    run_async(scenario)


def test_the_tasks_list_gets_a_new_task_as_a_row_and_then_its_changes(
    transactional_db, redis_client, alice
):
    from runtime import start
    from tests import task_handlers

    async def scenario():
        communicator = connect(alice)
        await communicator.connect()
        await communicator.send_json_to(
            {"subscribe": "tasks", "cursor": timezone.now().isoformat(), "sub": 3}
        )
        assert await communicator.receive_nothing(timeout=0.3)

        handle = await database_sync_to_async(start)(task_handlers.echo)
        message = await communicator.receive_json_from(timeout=5)
        assert message == {
            "type": "update",
            "sub": 3,
            "rows": [{"id": f"task-{handle.id}", "key": ANY, "html": ANY}],
            "gone": [],
            "more": False,
            "page_size": ANY,
            "cursor": ANY,
        }
        assert "badge task-queued" in message["rows"][0]["html"]
        await database_sync_to_async(handle.cancel)()
        message = await communicator.receive_json_from(timeout=5)
        assert "badge task-cancelled" in message["rows"][0]["html"]
        await ring()  # nothing new since
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()

    run_async(scenario)


def test_every_message_carries_the_id_of_the_subscription_it_answers(
    transactional_db, redis_client, alice
):
    async def scenario():
        communicator = connect(alice)
        await communicator.connect()
        await communicator.send_json_to(
            {"subscribe": "runs", "query": "", "cursor": timezone.now().isoformat(), "sub": 7}
        )
        await database_sync_to_async(send)("test:downstream")
        assert (await communicator.receive_json_from(timeout=5))["sub"] == 7
        await communicator.send_json_to({"subscribe": "run", "key": "nope", "sub": 8})
        assert (await communicator.receive_json_from(timeout=5))["sub"] == 8
        await communicator.disconnect()

    run_async(scenario)


def test_a_new_subscription_gets_rows_an_older_one_was_sent(transactional_db, redis_client, alice):
    async def scenario():
        communicator = connect(alice)
        await communicator.connect()
        before = timezone.now().isoformat()
        await communicator.send_json_to(
            {"subscribe": "runs", "query": "status=queued", "cursor": before, "sub": 1}
        )
        await database_sync_to_async(send)("test:downstream")
        run = await database_sync_to_async(Run.objects.get)()
        assert (await communicator.receive_json_from(timeout=5))["rows"][0]["id"] == f"run-{run.id}"
        await communicator.send_json_to(
            {"subscribe": "runs", "query": "", "cursor": before, "sub": 2}
        )
        message = await communicator.receive_json_from(timeout=5)
        assert message["sub"] == 2 and [r["id"] for r in message["rows"]] == [f"run-{run.id}"]
        await communicator.disconnect()

    run_async(scenario)


def test_a_page_too_far_behind_is_told_to_reload_rather_than_catch_up(
    transactional_db, redis_client, alice
):
    async def scenario():
        await database_sync_to_async(send)("test:downstream")
        now = timezone.now()
        await database_sync_to_async(Run.objects.update)(updated_at=now - MAX_CATCH_UP * 2)
        communicator = connect(alice)
        await communicator.connect()
        stale = (now - MAX_CATCH_UP * 3).isoformat()  # before the run's change
        await communicator.send_json_to(
            {"subscribe": "runs", "query": "", "cursor": stale, "sub": 3}
        )
        message = await communicator.receive_json_from(timeout=5)
        assert message["type"] == "reload" and message["sub"] == 3
        assert await communicator.receive_nothing(timeout=0.3)  # no catching up on the run
        await communicator.disconnect()

    run_async(scenario)


def test_a_cursor_in_the_future_still_hears_of_changes(transactional_db, redis_client, alice):
    async def scenario():
        communicator = connect(alice)
        await communicator.connect()
        future = (timezone.now() + timedelta(days=1)).isoformat()
        await communicator.send_json_to(
            {"subscribe": "runs", "query": "", "cursor": future, "sub": 5}
        )
        await database_sync_to_async(send)("test:downstream")
        message = await communicator.receive_json_from(timeout=5)
        assert message["type"] == "update" and len(message["rows"]) == 1
        await communicator.disconnect()

    run_async(scenario)


def test_a_run_page_too_far_behind_refreshes_its_fragment(transactional_db, redis_client, alice):
    async def scenario():
        await database_sync_to_async(send)("test:downstream")
        run = await database_sync_to_async(Run.objects.get)()
        communicator = connect(alice)
        await communicator.connect()
        stale = (timezone.now() - MAX_CATCH_UP - timedelta(minutes=1)).isoformat()
        await communicator.send_json_to(
            {"subscribe": "run", "key": str(run.id), "cursor": stale, "resume": True, "sub": 4}
        )
        message = await communicator.receive_json_from(timeout=5)
        assert message["type"] == "reload" and message["sub"] == 4
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()

    run_async(scenario)
