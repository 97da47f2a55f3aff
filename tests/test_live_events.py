"""The events list over the live websocket, and what one check of a group of pages costs."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from hotapp.consumers import Subscription, check
from hotapp.filters import row_key
from hotapp.live_feeds import FEEDS
from hotapp.models import Event, Run
from runtime import executor, send
from tests.test_live import connect, run_async

pytestmark = pytest.mark.services


def subscribe_events(query: str = "", cursor: str | None = None, sub: int = 1) -> dict:
    return {
        "subscribe": "events",
        "query": query,
        "cursor": cursor or timezone.now().isoformat(),
        "sub": sub,
    }


def test_an_event_sent_after_subscribing_arrives_as_a_rendered_row(
    transactional_db, redis_client, alice
):
    async def scenario():
        communicator = connect(alice)
        assert (await communicator.connect())[0]
        await communicator.send_json_to(subscribe_events())
        # No handler listens: no run rings for it, the event itself does.
        event_id = await database_sync_to_async(send)("nobody:listens", {"note": "hello"})
        message = await communicator.receive_json_from(timeout=5)
        event = await database_sync_to_async(Event.objects.get)(id=event_id)
        assert message["type"] == "update" and message["sub"] == 1 and message["gone"] == []
        [row] = message["rows"]
        assert row["id"] == f"event-{event.id}"
        assert row["key"] == row_key(event.created_at, event.id)
        assert f'<tr id="event-{event.id}"' in row["html"] and "unhandled" in row["html"]
        assert "hello" in row["html"]
        await communicator.disconnect()

    run_async(scenario)


def test_a_filtered_events_list_gets_only_the_events_of_its_type(
    transactional_db, redis_client, alice
):
    async def scenario():
        communicator = connect(alice)
        await communicator.connect()
        await communicator.send_json_to(subscribe_events("type=order%3Apaid"))
        await database_sync_to_async(send)("nobody:listens")
        paid = await database_sync_to_async(send)("order:paid", {"order_id": 5})
        message = await communicator.receive_json_from(timeout=5)
        assert [row["id"] for row in message["rows"]] == [f"event-{paid}"]
        assert await communicator.receive_nothing(timeout=0.5)  # never the other one
        await communicator.disconnect()

    run_async(scenario)


def test_an_events_runs_cell_follows_its_runs_and_events_sent_by_a_run_arrive(
    transactional_db, redis_client, alice
):
    async def scenario():
        communicator = connect(alice)
        await communicator.connect()
        await communicator.send_json_to(subscribe_events())
        await database_sync_to_async(send)("test:fails-once-after-send")
        message = await communicator.receive_json_from(timeout=5)
        [row] = message["rows"]
        assert "status-queued" in row["html"]
        run = await database_sync_to_async(Run.objects.get)()

        # The attempt fails: the same row again, with the run's new status (nothing was sent).
        await database_sync_to_async(executor.execute)(run.id)
        message = await communicator.receive_json_from(timeout=5)
        assert [r["id"] for r in message["rows"]] == [row["id"]]
        assert "status-pending_retry" in message["rows"][0]["html"]
        await communicator.disconnect()

    run_async(scenario)


def test_the_event_a_run_sends_reaches_the_list_when_the_run_succeeds(
    transactional_db, redis_client, alice
):
    async def scenario():
        await database_sync_to_async(send)("test:batch", {"send": {"from": "a run"}})
        run = await database_sync_to_async(Run.objects.get)()
        communicator = connect(alice)
        await communicator.connect()
        await communicator.send_json_to(subscribe_events("type=test%3Adownstream"))
        assert await communicator.receive_nothing(timeout=0.3)
        await database_sync_to_async(executor.execute)(run.id)
        message = await communicator.receive_json_from(timeout=5)
        sent = await database_sync_to_async(Event.objects.get)(type="test:downstream")
        assert [r["id"] for r in message["rows"]] == [f"event-{sent.id}"]
        await communicator.disconnect()

    run_async(scenario)


def test_a_reconnecting_events_list_catches_up_from_its_cursor(
    transactional_db, redis_client, alice
):
    async def scenario():
        before = timezone.now().isoformat()
        missed = await database_sync_to_async(send)("nobody:listens", {"while": "offline"})
        communicator = connect(alice)
        await communicator.connect()
        await communicator.send_json_to(subscribe_events(cursor=before))
        message = await communicator.receive_json_from(timeout=5)
        assert [r["id"] for r in message["rows"]] == [f"event-{missed}"]
        await communicator.disconnect()

    run_async(scenario)


def test_an_events_list_too_far_behind_is_told_to_reload(transactional_db, redis_client, alice):
    async def scenario():
        communicator = connect(alice)
        await communicator.connect()
        stale = (timezone.now() - timedelta(minutes=5)).isoformat()
        await communicator.send_json_to(subscribe_events(cursor=stale, sub=9))
        assert (await communicator.receive_json_from(timeout=5))["type"] == "reload"
        await communicator.disconnect()

    run_async(scenario)


def pages_following(kind: str, query: str, count: int) -> list[Subscription]:
    feed = FEEDS[kind]
    cursor = timezone.now() - timedelta(seconds=1)
    params = feed.prepare({"query": query})
    return [Subscription(feed, n, cursor, (kind, query), params) for n in range(count)]


@pytest.mark.parametrize("kind, query", [("runs", ""), ("runs", "status=queued"), ("events", "")])
def test_one_check_serves_every_page_that_follows_the_same_list(transactional_db, kind, query):
    for n in range(3):
        send("order:created", {"order_id": n, "items": []})
    pages = pages_following(kind, query, 3)

    with CaptureQueriesContext(connection) as queries:
        messages = check(pages)

    # One read of what changed, one of the rows to render (and the events' runs, prefetched).
    assert len(queries) == (3 if kind == "events" else 2)
    assert [len(messages[page]["rows"]) for page in pages] == [3, 3, 3]
    assert messages[pages[0]]["rows"] == messages[pages[2]]["rows"]
    with CaptureQueriesContext(connection) as queries:
        assert check(pages) == {}  # nothing new since: one read, nothing rendered
    assert len(queries) == 1
