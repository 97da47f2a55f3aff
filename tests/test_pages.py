"""The dashboard pages that exist so far: runs, events and a run's page."""

import pytest

from hotapp.models import Run
from runtime import send
from tests.conftest import drain

pytestmark = pytest.mark.django_db


def test_the_runs_page_lists_runs_with_their_status_and_retry_badge(client):
    send("order:created", {"order_id": 1, "items": []})
    drain()

    page = client.get("/").content.decode()

    assert "on_order_shipped" in page
    assert "status-failed" in page and "status-succeeded" in page
    assert "↻1" in page


def test_a_run_page_shows_input_as_json_error_attempts_and_lineage(client):
    send("order:created", {"order_id": 2, "items": []})
    drain()
    first = Run.objects.get(function__endswith="on_order_created", attempt=1)

    page = client.get(f"/runs/{first.id}/").content.decode()

    assert "&quot;order_id&quot;: 2" in page
    assert "PaymentDeclined" in page and "card network timed out" in page
    assert "attempt 2" in page
    assert "sent from outside any run" in page


def test_payloads_are_shown_as_text_not_markup(client):
    send("test:downstream", {"html": "<script>alert(1)</script>"})

    run = Run.objects.get()
    for url in ("/events/", f"/runs/{run.id}/"):
        page = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;" in page


def test_an_unknown_run_is_a_404(client):
    assert client.get("/runs/01a21355-c8e0-72c9-b9ac-b495e523e77a/").status_code == 404
