"""The events list and an event's page."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hotapp.filters import row_key
from hotapp.models import Event
from runtime import send
from tests.conftest import drain
from tests.test_runs_page import submit

pytestmark = pytest.mark.django_db


def shown_ids(response) -> list[str]:
    return re.findall(r'id="event-([0-9a-f-]{36})"', response.content.decode())


@pytest.fixture
def events():
    send("order:created", {"order_id": 7, "items": []})
    send("nobody:listens", {"note": "lost in space"})
    drain()


def row(page: str, event: Event) -> str:
    return re.search(rf'<tr id="event-{event.id}"[^>]*>.*?</tr>', page, re.S).group(0)


def test_it_lists_events_with_payload_and_the_runs_they_triggered(alice_client, events):
    page = alice_client.get("/events/").content.decode()

    assert len(re.findall(r'id="event-[0-9a-f]{8}-', page)) == Event.objects.count() == 4
    paid = row(page, Event.objects.get(type="order:paid"))
    assert "on_order_paid" in paid and "status-succeeded" in paid
    assert "&quot;order_id&quot;: 7" in paid
    lost = row(page, Event.objects.get(type="nobody:listens"))
    assert '<span class="badge unhandled">unhandled</span>' in lost
    assert "lost in space" in lost
    assert "badge unhandled" not in paid


def test_a_list_of_large_payloads_stays_small(alice_client):
    blob = "x" * 100_000
    for n in range(50):
        send("test:downstream", {"n": n, "blob": blob})  # a run each, with the blob as input

    with CaptureQueriesContext(connection) as queries:
        response = alice_client.get("/events/")

    page = response.content.decode()
    assert len(shown_ids(response)) == 50
    assert len(response.content) < 100_000  # 50 x 100 kB of payload: 5 MB in full
    assert page.count("x" * 100) == 50  # each row shows the start of its payload
    # The payloads are cut in the database; the runs' payloads are not read at all.
    assert not any('"hotapp_run"."input"' in q["sql"] for q in queries)
    for sql in (q["sql"] for q in queries):
        assert sql.count('"hotapp_event"."data"') == sql.count('LEFT(("hotapp_event"."data")::text')


def test_it_filters_by_type_and_by_handled(alice_client, events):
    by_type = alice_client.get("/events/?type=order:shipped")
    unhandled = alice_client.get("/events/?handled=no")

    assert [Event.objects.get(id=i).type for i in shown_ids(by_type)] == ["order:shipped"]
    assert [Event.objects.get(id=i).type for i in shown_ids(unhandled)] == ["nobody:listens"]


def test_the_filter_form_works_without_javascript(alice_client, events):
    page = alice_client.get("/events/").content.decode()

    unhandled = submit(alice_client, page, handled="no", q="space")
    paid = submit(alice_client, page, type="order:paid", handled="yes", q="order_id:7")

    assert [Event.objects.get(id=i).type for i in shown_ids(unhandled)] == ["nobody:listens"]
    assert [Event.objects.get(id=i).type for i in shown_ids(paid)] == ["order:paid"]


def test_it_searches_event_payloads(alice_client, events):
    by_value = alice_client.get("/events/", {"q": "order_id:7"})
    by_text = alice_client.get("/events/", {"q": "space"})

    assert len(shown_ids(by_value)) == 3
    assert [Event.objects.get(id=i).type for i in shown_ids(by_text)] == ["nobody:listens"]


def test_bad_search_input_gets_a_clear_message(alice_client, events):
    response = alice_client.get("/events/", {"q": 'x:"unclosed'})

    assert response.status_code == 200
    assert "quote" in response.content.decode()


def test_an_event_page_shows_its_payload_sender_runs_and_lineage(alice_client, events):
    paid = Event.objects.get(type="order:paid")
    page = alice_client.get(f"/events/{paid.id}/").content.decode()

    assert "&quot;order_id&quot;: 7" in page
    assert f'href="/runs/{paid.source_run_id}/"' in page
    assert "on_order_paid" in page
    assert f'data-node="{paid.id}"' in page


def test_an_unhandled_event_page_says_no_handler_subscribed(alice_client, events):
    lost = Event.objects.get(type="nobody:listens")

    assert "No handler subscribed" in alice_client.get(f"/events/{lost.id}/").content.decode()


def test_the_events_list_is_live_and_each_row_carries_its_place(alice_client, events):
    page = alice_client.get("/events/?type=order:paid").content.decode()
    paid = Event.objects.get(type="order:paid")

    assert 'data-live="events" data-noun="event" data-query="type=order%3Apaid"' in page
    assert 'data-first-page="1"' in page and 'id="new-events"' in page
    assert f'<tr id="event-{paid.id}" data-key="{row_key(paid.created_at, paid.id)}">' in page


def test_a_row_key_is_also_the_cursor_of_the_page_after_that_row(alice_client, events):
    newest, *older = Event.objects.newest_first()

    after = alice_client.get("/events/", {"after": row_key(newest.created_at, newest.id)})

    assert shown_ids(after) == [str(event.id) for event in older]
    assert 'data-first-page="0"' in after.content.decode()


def test_a_later_page_reloaded_live_gets_its_whole_region(alice_client, events):
    newest = Event.objects.newest_first().first()
    region = alice_client.get(
        "/events/",
        {"after": row_key(newest.created_at, newest.id)},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="events-region",
    )

    assert region.content.decode().lstrip().startswith('<section id="events-region"')
