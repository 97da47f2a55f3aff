"""The overview: counts by status, runs per minute, failure rate per function, recent failures."""

import re

import pytest

from runtime import send
from tests.conftest import drain

pytestmark = pytest.mark.django_db


def test_it_counts_runs_by_status_and_shows_failure_rates_and_recent_failures(alice_client):
    for n in range(2):
        send("order:created", {"order_id": n, "items": []})
    drain()

    page = alice_client.get("/overview/").content.decode()

    assert '<span class="stat-value">6</span>' in page  # succeeded: 2 x (retry, paid, shipped)
    assert '<span class="stat-value">2</span>' in page  # failed first attempts
    assert "50.0%" in page  # on_order_created: 2 failed of 4
    assert "card network timed out" in page
    # The runs may straddle a minute boundary, so add up every bar of the hour.
    bars = re.findall(r"(\d+) runs, (\d+) failed", page)
    assert [sum(int(b[0]) for b in bars), sum(int(b[1]) for b in bars)] == [8, 2]


def test_it_works_with_no_runs_at_all(alice_client):
    page = alice_client.get("/overview/").content.decode()

    assert "No runs in the last hour." in page and "No failures." in page
