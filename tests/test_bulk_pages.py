"""Bulk actions on the runs page and in the API: the count, the confirmation, the operation's
page, and who may do it."""

import re

import pytest
from django.test import Client

from hotapp.models import BulkOperation, Run, RunStatus, Via
from runtime import Actor, bulk
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


def text(response) -> str:
    """The page's text without tags, spaces squeezed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_the_runs_page_offers_a_bulk_action_carrying_its_filters(alice_client, make_runs):
    make_runs(1)

    page = alice_client.get("/?status=failed&status=queued&q=n:0&after=").content.decode()

    form = page[page.index('<div class="bulk-bar">') :]
    form = form[: form.index("</form>")]
    assert 'action="/bulk/new/"' in form and 'method="get"' in form
    assert re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', form) == [
        ("status", "failed"),
        ("status", "queued"),
        ("q", "n:0"),
    ]
    assert '<option value="retry">Retry failed</option>' in form


def test_bob_who_only_looks_is_offered_no_bulk_action(bob_client, make_runs):
    make_runs(1)

    assert b"bulk-bar" not in bob_client.get("/").content


def test_the_confirmation_shows_the_dry_run_count_and_changes_nothing(alice_client, make_runs):
    make_runs(3)
    make_runs(2, status="succeeded")

    response = alice_client.get("/bulk/new/", {"action": "retry", "status": "failed"})

    assert "This will retry 3 failed runs matching: status=failed." in text(response)
    assert "Confirm: retry 3 runs" in text(response)
    assert not Run.objects.filter(attempt=2).exists()
    assert not BulkOperation.objects.exists()


def test_confirming_starts_the_operation_and_shows_its_progress(alice_client, alice, make_runs):
    make_runs(3)

    response = alice_client.post(
        "/bulk/new/", {"action": "retry", "status": "failed", "function": "downstream"}
    )
    # function=downstream is not a handler's full name: it matches nothing, as on the page.
    operation = BulkOperation.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/bulk/{operation.id}/"
    assert operation.filter == {"status": ["failed"], "function": "downstream"}
    assert (operation.kind, operation.via, operation.created_by) == ("retry", "page", alice)
    assert operation.total == 0

    alice_client.post("/bulk/new/", {"action": "retry", "status": "failed"})
    operation = BulkOperation.objects.order_by("-created_at").first()
    assert (operation.total, operation.status) == (3, "pending")
    page = alice_client.get(f"/bulk/{operation.id}/")
    assert 'hx-trigger="every 1s"' in page.content.decode()
    assert '<meta http-equiv="refresh" content="2">' in page.content.decode()
    assert "0 of 3 handled" in text(page)

    bulk.execute(operation.id)
    page = alice_client.get(f"/bulk/{operation.id}/", headers={"HX-Request": "true"})
    assert "hx-trigger" not in page.content.decode()  # finished: the polling stops
    assert "3 of 3 handled" in text(page) and "3 retried" in text(page)
    assert "Done" in text(page) and "alice · dashboard" in text(page)


def test_the_confirmation_says_when_nothing_matches_and_offers_no_button(alice_client):
    response = alice_client.get("/bulk/new/", {"action": "cancel", "function": "x.y"})

    assert "No unfinished runs match: function=x.y. Nothing to do." in text(response)
    assert b"Confirm" not in response.content


def test_a_bad_filter_or_action_is_shown_not_started(alice_client):
    bad_date = alice_client.get("/bulk/new/", {"action": "retry", "since": "soon"})
    bad_action = alice_client.post("/bulk/new/", {"action": "delete"})

    assert "Since: Enter a valid date/time." in text(bad_date)
    assert "No bulk action &#x27;delete&#x27;" in bad_action.content.decode()
    assert not BulkOperation.objects.exists()


def test_bob_may_not_preview_start_or_stop_an_operation(bob_client, make_runs):
    make_runs(1)
    operation = bulk.start_bulk("retry", {}, ring=False)

    assert bob_client.get("/bulk/new/", {"action": "retry"}).status_code == 403
    assert bob_client.post("/bulk/new/", {"action": "retry"}).status_code == 403
    assert bob_client.post(f"/bulk/{operation.id}/stop/").status_code == 403
    assert BulkOperation.objects.count() == 1
    assert bob_client.get(f"/bulk/{operation.id}/").status_code == 200  # he may look
    assert b"Stop</button>" not in bob_client.get(f"/bulk/{operation.id}/").content


def test_anonymous_visitors_are_sent_to_log_in(client):
    for url in ("/bulk/", "/bulk/new/?action=retry"):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]
    assert client.post("/bulk/new/", {"action": "retry"}).status_code == 302
    assert not BulkOperation.objects.exists()


def test_confirming_without_the_csrf_token_is_refused(alice, make_runs):
    make_runs(1)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)

    assert browser.post("/bulk/new/", {"action": "retry"}).status_code == 403
    assert browser.post("/api/runs/bulk/", {"action": "retry"}).status_code == 403
    assert not BulkOperation.objects.exists()


def test_an_operation_can_be_stopped_from_its_page(alice_client, make_runs):
    make_runs(1)
    operation = bulk.start_bulk("retry", {}, ring=False)

    response = alice_client.post(f"/bulk/{operation.id}/stop/", follow=True)

    assert "Stopped. The batches done so far stay done." in text(response)
    assert BulkOperation.objects.get().status == "cancelled"
    assert bulk.execute(operation.id) is None


def test_the_bulk_operations_page_lists_the_newest_first(bob_client, make_runs):
    make_runs(2)
    first = bulk.start_bulk("retry", {"status": "failed"}, Actor(via=Via.CLI, name="ops"))
    second = bulk.start_bulk("cancel", {}, ring=False)

    page = bob_client.get("/bulk/").content.decode()

    assert page.index(f"bulk-{second.id}") < page.index(f"bulk-{first.id}")
    assert "status=failed" in page and "ops" in page and "CLI" in page


def test_the_api_counts_first_then_starts_the_operation(alice_client, make_runs):
    make_runs(4)
    body = {"action": "retry", "filter": {"status": ["failed"]}, "dry_run": True}

    dry = alice_client.post("/api/runs/bulk/", body, content_type="application/json")

    assert dry.status_code == 200
    assert dry.json() == {
        "action": "retry",
        "filter": {"status": ["failed"]},
        "count": 4,
        "description": "This will retry 4 failed runs matching: status=failed",
    }
    assert not BulkOperation.objects.exists()

    started = alice_client.post(
        "/api/runs/bulk/", {**body, "dry_run": False}, content_type="application/json"
    )
    operation = BulkOperation.objects.get()
    assert started.status_code == 202
    assert started["Location"] == f"/api/bulk/{operation.id}/"
    assert started.json()["total"] == 4 and started.json()["via"] == "api"
    bulk.execute(operation.id)
    progress = alice_client.get(f"/api/bulk/{operation.id}/").json()
    assert (progress["status"], progress["done"], progress["skipped"]) == ("done", 4, 0)
    assert progress["created_by"] == "alice"
    assert progress["page_url"] == f"/bulk/{operation.id}/"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "delete"}, "No bulk action 'delete'"),
        ({"action": "retry", "filter": {"colour": "red"}}, "filter must be an object"),
        ({"action": "retry", "filter": ["failed"]}, "filter must be an object"),
        ({"action": "retry", "filter": {"since": "soon"}}, "Since: Enter a valid date/time."),
        ({"action": "retry", "dry_run": "yes"}, "dry_run must be true or false."),
        ([1, 2], "The body must be a JSON object."),
    ],
)
def test_the_api_refuses_a_malformed_request_saying_why(alice_client, body, message):
    response = alice_client.post("/api/runs/bulk/", body, content_type="application/json")

    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert not BulkOperation.objects.exists()


def test_the_api_needs_a_login_and_the_permission(bob_client):
    body = {"action": "retry", "dry_run": True}

    anonymous = Client().post("/api/runs/bulk/", body, content_type="application/json")
    forbidden = bob_client.post("/api/runs/bulk/", body, content_type="application/json")

    assert (anonymous.status_code, forbidden.status_code) == (401, 403)


def test_an_operation_started_from_the_api_is_done_by_a_worker(celery_worker, alice, make_runs):
    make_runs(250)
    api = Client()
    api.force_login(alice)

    started = api.post(
        "/api/runs/bulk/",
        {"action": "retry", "filter": {"status": "failed"}},
        content_type="application/json",
    ).json()

    def finished():
        progress = api.get(started["url"]).json()
        return progress if progress["status"] == "done" else None

    progress = wait_for(finished, what="the worker to finish the operation")
    assert (progress["total"], progress["done"], progress["failed"]) == (250, 250, 0)
    assert Run.objects.filter(attempt=2).count() == 250


def test_a_run_a_bulk_operation_acted_on_says_who_did_it_on_its_page(
    alice_client, alice, make_runs
):
    [failed] = make_runs(1)
    [queued] = make_runs(1, status=RunStatus.QUEUED)
    bulk.execute(bulk.start_bulk("retry", {}, Actor(alice, via=Via.PAGE), ring=False).id)
    bulk.execute(bulk.start_bulk("cancel", {}, Actor(alice, via=Via.API), ring=False).id)

    retried = text(alice_client.get(f"/runs/{failed.id}/"))
    cancelled = text(alice_client.get(f"/runs/{queued.id}/"))

    assert "Retried by alice" in retried and "via dashboard" in retried and "attempt 2" in retried
    assert "Cancelled by alice" in cancelled and "via API" in cancelled
