"""The JSON API: the same filters and pages as the dashboard, for scripts."""

import pytest

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
        assert response.status_code == 401 and response.json() == {"error": "Log in first."}


def test_it_lists_runs_with_the_dashboard_filters(bob_client, order):
    # Every failed attempt: this one's retry succeeded, so it does not need attention.
    data = bob_client.get("/api/runs/", {"status": "failed_attempt", "q": "order_id:3"}).json()

    [run] = data["results"]
    assert run["status"] == "failed" and run["input"]["order_id"] == 3
    assert run["is_superseded"] is True
    assert run["error"]["type"] == "hotapp.demo.handlers.PaymentDeclined"
    assert data["next"] is None


def test_it_pages_by_cursor(bob_client, order, monkeypatch):
    monkeypatch.setattr("hotapp.api.PAGE_SIZE", 3)
    first = bob_client.get("/api/runs/").json()
    second = bob_client.get("/api/runs/", {"after": first["next"]}).json()

    ids = [r["id"] for r in first["results"] + second["results"]]
    assert len(ids) == len(set(ids)) == Run.objects.count() == 4


def test_bad_filters_are_a_400_with_messages(bob_client):
    response = bob_client.get("/api/runs/", {"status": "bogus", "q": '"open'})

    assert response.status_code == 400
    assert len(response.json()["errors"]) == 2


def test_it_shows_one_run_and_one_event(bob_client, order):
    run = Run.objects.get(attempt=2)
    data = bob_client.get(f"/api/runs/{run.id}/").json()
    event = bob_client.get(f"/api/events/{run.event_id}/").json()

    assert data["origin_run_id"] == str(run.origin_run_id)
    assert event["type"] == "order:created" and str(run.id) in event["run_ids"]


def test_actions_need_the_permission_and_report_conflicts(alice_client, bob, order):
    failed = Run.objects.get(attempt=1, status="failed")  # already retried
    paid = Run.objects.get(function__endswith="on_order_paid")

    assert alice_client.post(f"/api/runs/{failed.id}/retry/").status_code == 409
    created = alice_client.post(f"/api/runs/{paid.id}/rerun/")
    assert created.status_code == 201 and created.json()["rerun_of_id"] == str(paid.id)
    alice_client.force_login(bob)
    assert alice_client.post(f"/api/runs/{paid.id}/rerun/").status_code == 403
