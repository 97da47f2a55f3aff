"""A run's page: input, outcome, attempts, lineage, trace; the Retry, Rerun and Cancel actions."""

import re

import pytest
from django.test import Client

from hotapp.models import Event, Run, RunStatus
from runtime import executor, send
from tests.conftest import drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def order():
    send("order:created", {"order_id": 5, "items": [{"sku": "mug", "price": 12.5}]})
    drain()
    return Run.objects.get(function__endswith="on_order_created", attempt=1)


def test_it_shows_input_error_and_traceback_of_a_failed_attempt(alice_client, order):
    page = alice_client.get(f"/runs/{order.id}/").content.decode()

    assert "&quot;order_id&quot;: 5" in page
    assert "PaymentDeclined" in page and "card network timed out" in page
    assert "Traceback (most recent call last)" in page


def test_it_shows_the_result_of_a_succeeded_run(alice_client, order):
    paid = Run.objects.get(function__endswith="on_order_paid")
    page = alice_client.get(f"/runs/{paid.id}/").content.decode()

    assert "Result" in page and "TRK000005" in page


def test_it_lists_every_attempt_with_badges_and_links(alice_client, order):
    retry = Run.objects.get(origin_run=order)
    page = alice_client.get(f"/runs/{retry.id}/").content.decode()

    assert f'href="/runs/{order.id}/">Attempt 1<' in page
    assert f'href="/runs/{retry.id}/">Attempt 2<' in page
    assert "↻1" in page


def test_the_lineage_graph_shows_every_step_of_the_workflow(alice_client, order):
    page = alice_client.get(f"/runs/{order.id}/").content.decode()

    for run in Run.objects.all():
        assert f'data-node="{run.id}"' in page
    for event in Event.objects.all():
        assert f'data-node="{event.id}"' in page
    assert page.count('class="edge"') == 4 + 2  # event->run x4, run->event x2


def test_the_trace_is_served_as_json_for_the_page_to_render(alice_client, order):
    data = alice_client.get(f"/runs/{order.id}/trace.json").json()

    assert [s["name"] for s in data["spans"]] == [
        "on_order_created",
        "validate_order",
        "charge_payment",
    ]
    assert data["spans"][2]["error"]["type"] == "hotapp.demo.handlers.PaymentDeclined"


def test_a_run_without_a_trace_says_so(alice_client):
    send("trace:off")
    drain()
    run = Run.objects.get()

    assert alice_client.get(f"/runs/{run.id}/trace.json").status_code == 404
    assert "No trace was recorded" in alice_client.get(f"/runs/{run.id}/").content.decode()


def test_pressing_retry_on_a_failed_run_queues_its_next_attempt(alice_client):
    send("test:always-fails", {"k": 1})
    drain()
    last = Run.objects.order_by("-attempt").first()

    response = alice_client.post(
        f"/runs/{last.id}/retry/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="run-live"
    )

    new = Run.objects.get(attempt=4)
    assert new.status == RunStatus.QUEUED and new.input == {"k": 1}
    page = response.content.decode()
    assert page.lstrip().startswith('<div id="run-live"')
    assert f'href="/runs/{new.id}/">Attempt 4<' in page


def test_retry_without_htmx_redirects_back_to_the_run(alice_client):
    send("test:always-fails")
    drain()
    last = Run.objects.order_by("-attempt").first()

    response = alice_client.post(f"/runs/{last.id}/retry/")

    assert response.status_code == 302 and response.url == f"/runs/{last.id}/"
    assert "Retry queued as attempt 4" in alice_client.get(response.url).content.decode()


def test_an_action_that_does_not_fit_shows_why(alice_client, order):
    retried_attempt = order  # attempt 1 already has its retry
    response = alice_client.post(f"/runs/{retried_attempt.id}/retry/", follow=True)

    assert "already retried" in response.content.decode()
    assert Run.objects.filter(origin_run=order).count() == 1


def test_rerun_opens_the_fresh_run(alice_client, order):
    paid = Run.objects.get(function__endswith="on_order_paid")

    response = alice_client.post(f"/runs/{paid.id}/rerun/")

    fresh = Run.objects.get(rerun_of=paid)
    assert response.status_code == 302 and response.url == f"/runs/{fresh.id}/"
    assert fresh.stream_id != paid.stream_id


def test_cancel_stops_a_queued_run(alice_client):
    send("test:downstream")
    run = Run.objects.get()

    alice_client.post(f"/runs/{run.id}/cancel/")

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


def test_an_unknown_run_or_action_is_a_404(alice_client, order):
    assert alice_client.get("/runs/01a21355-c8e0-72c9-b9ac-b495e523e77a/").status_code == 404
    assert alice_client.post(f"/runs/{order.id}/explode/").status_code == 404


def test_payloads_are_shown_as_text_not_markup(alice_client):
    send("test:downstream", {"html": "<script>alert(1)</script>"})
    drain()
    run = Run.objects.get()

    for url in ("/events/", f"/runs/{run.id}/", f"/events/{run.event_id}/", "/"):
        page = alice_client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in page, url
    assert "&lt;script&gt;" in alice_client.get(f"/runs/{run.id}/").content.decode()


def test_a_long_function_name_and_a_large_payload_do_not_break_the_page(alice_client):
    send("test:downstream", {"blob": "x" * 200_000, "nested": {"deep": list(range(5000))}})
    drain()
    run = Run.objects.get()

    response = alice_client.get(f"/runs/{run.id}/")

    assert response.status_code == 200
    assert alice_client.get("/events/").status_code == 200


@pytest.fixture
def csrf_client(alice):
    """A browser-like client: POSTs need the CSRF token of a page it has loaded."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    return client


def post_from_page(client, page_url: str, action_url: str):
    page = client.get(page_url).content.decode()
    assert f'action="{action_url}"' in page, f"no {action_url} form on {page_url}"
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    return client.post(action_url, {"csrfmiddlewaretoken": token})


def test_cancel_on_the_page_of_a_running_run_asks_it_to_stop(csrf_client):
    send("test:downstream")
    run = Run.objects.get()
    assert executor.claim(run.id, "a-worker")

    response = post_from_page(csrf_client, f"/runs/{run.id}/", f"/runs/{run.id}/cancel/")

    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.cancel_requested_at is not None
    page = csrf_client.get(response.url).content.decode()
    assert "Cancel requested." in page and "cancel requested</span>" in page


def test_cancel_on_the_page_of_a_pending_retry_cancels_it_with_no_further_attempt(csrf_client):
    send("test:always-fails")
    executor.execute(Run.objects.get().id)
    run = Run.objects.get()
    assert run.status == RunStatus.PENDING_RETRY

    post_from_page(csrf_client, f"/runs/{run.id}/", f"/runs/{run.id}/cancel/")
    drain()

    assert list(Run.objects.values_list("status", flat=True)) == [RunStatus.CANCELLED]


def test_run_actions_without_the_csrf_token_are_refused(csrf_client):
    send("test:downstream")
    run = Run.objects.get()

    assert csrf_client.post(f"/runs/{run.id}/cancel/").status_code == 403

    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
