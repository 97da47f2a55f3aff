"""The JSON API: the same filters and pages as the dashboard, for scripts."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hotapp.models import Run
from runtime import send
from tests.conftest import drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def order():
    send("order:created", {"order_id": 3, "items": []})
    drain()


def test_it_needs_a_login_and_says_so_in_json(client, order):
    for url in ("/api/runs/", "/api/events/"):
        response = client.get(url)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_lists_runs_with_the_dashboard_filters(bob_client, order):
    # Every failed attempt: this one's retry succeeded, so it does not need attention.
    data = bob_client.get(
        "/api/runs/", {"status": "failed_attempt", "q": "order_id:3", "include": "payloads"}
    ).json()

    [run] = data["results"]
    assert run["status"] == "failed" and run["input"]["order_id"] == 3
    assert run["is_superseded"] is True
    assert run["error"]["type"] == "hotapp.demo.handlers.PaymentDeclined"
    assert data["next"] is None


def test_list_rows_carry_no_payloads_unless_asked(bob_client, order):
    run = bob_client.get("/api/runs/", {"status": "failed_attempt"}).json()["results"][0]
    event = bob_client.get("/api/events/").json()["results"][0]

    assert "input" not in run and "result" not in run and "error" not in run
    assert run["error_type"] == "hotapp.demo.handlers.PaymentDeclined"
    assert run["attempt"] and run["function"] and run["created_at"]
    assert "data" not in event and event["type"]


def test_a_list_without_payloads_does_not_read_them(bob_client):
    send("test:downstream", {"blob": "x" * 100_000})
    drain()

    with CaptureQueriesContext(connection) as queries:
        assert bob_client.get("/api/runs/").status_code == 200
        assert bob_client.get("/api/events/").status_code == 200

    selects = [
        q["sql"] for q in queries if '"hotapp_run"' in q["sql"] or "hotapp_event" in q["sql"]
    ]
    for column in ('"hotapp_run"."input"', '"hotapp_run"."result"', '"hotapp_event"."data"'):
        assert not any(column in sql for sql in selects), column


def test_it_pages_by_cursor_with_a_limit(bob_client, order):
    first = bob_client.get("/api/runs/", {"limit": 3}).json()
    second = bob_client.get("/api/runs/", {"limit": 3, "after": first["next"]}).json()

    assert len(first["results"]) == 3
    ids = [r["id"] for r in first["results"] + second["results"]]
    assert len(ids) == len(set(ids)) == Run.objects.count() == 4
    assert second["next"] is None


@pytest.mark.parametrize("limit", ["0", "501", "lots"])
def test_a_limit_out_of_range_is_a_400_naming_the_cap(bob_client, limit):
    response = bob_client.get("/api/events/", {"limit": limit})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert "Limit" in response.json()["error"]["message"]


def test_bad_filters_are_a_400_with_messages(bob_client):
    response = bob_client.get("/api/runs/", {"status": "bogus", "q": '"open', "include": "traces"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request" and len(error["details"]) == 3
    assert "traces cannot be included" in error["message"]


def test_it_shows_one_run_and_one_event(bob_client, order):
    run = Run.objects.get(attempt=2)
    data = bob_client.get(f"/api/runs/{run.id}/").json()
    event = bob_client.get(f"/api/events/{run.event_id}/").json()

    assert data["origin_run_id"] == str(run.origin_run_id) and data["input"]["order_id"] == 3
    assert event["type"] == "order:created" and str(run.id) in event["run_ids"]
    assert event["data"]["order_id"] == 3


UNKNOWN = "01a21355-c8e0-72c9-b9ac-b495e523e77a"


@pytest.mark.parametrize(
    "url",
    [
        f"/api/runs/{UNKNOWN}/",
        f"/api/events/{UNKNOWN}/",
        "/api/runs/not-a-uuid/",
        "/api/nothing/here/",
        "/api/",
    ],
)
def test_what_is_not_there_is_a_json_404(bob_client, url):
    response = bob_client.get(url)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_url_without_its_slash_says_where_the_endpoint_is(bob_client):
    response = bob_client.get("/api/runs")

    assert response.status_code == 404
    assert "Did you mean /api/runs/ ?" in response.json()["error"]["message"]


def test_a_wrong_method_is_a_json_405(alice_client, order):
    run = Run.objects.first()

    for response, allowed in (
        (alice_client.post("/api/runs/"), "GET"),
        (alice_client.get(f"/api/runs/{run.id}/retry/"), "POST"),
    ):
        assert response.status_code == 405 and response["Allow"] == allowed
        assert response.json()["error"]["code"] == "method_not_allowed"


def test_actions_need_the_permission_and_report_conflicts(alice_client, bob, order):
    failed = Run.objects.get(attempt=1, status="failed")  # already retried
    paid = Run.objects.get(function__endswith="on_order_paid")

    conflict = alice_client.post(f"/api/runs/{failed.id}/retry/")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "conflict"
    assert "already retried" in conflict.json()["error"]["message"]
    created = alice_client.post(f"/api/runs/{paid.id}/rerun/")
    assert created.status_code == 201 and created.json()["rerun_of_id"] == str(paid.id)
    assert created["Location"] == f"/api/runs/{created.json()['id']}/"
    alice_client.force_login(bob)
    forbidden = alice_client.post(f"/api/runs/{paid.id}/rerun/")
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "permission_denied"
    assert "hotapp.operate_run" in forbidden.json()["error"]["message"]


def test_an_action_on_an_unknown_run_or_an_unknown_action_is_a_json_404(alice_client, order):
    run = Run.objects.first()

    for url in (f"/api/runs/{UNKNOWN}/cancel/", f"/api/runs/{run.id}/explode/"):
        response = alice_client.post(url)
        assert response.status_code == 404, url
        assert response.json()["error"]["code"] == "not_found"
    assert Run.objects.count() == 4


def test_cancelling_a_finished_run_is_a_409(alice_client, order):
    paid = Run.objects.get(function__endswith="on_order_paid")

    response = alice_client.post(f"/api/runs/{paid.id}/cancel/")

    assert (
        response.status_code == 409
        and "only unfinished runs" in response.json()["error"]["message"]
    )
