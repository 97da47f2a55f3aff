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
    assert summed_bars(chart(page, 'class="chart"')) == [8, 2]


def chart(page: str, marker: str) -> str:
    """The <svg> that carries `marker` in its opening tag."""
    return re.search(rf"<svg [^>]*{marker}[^>]*>.*?</svg>", page, re.S).group(0)


def summed_bars(svg: str) -> list[int]:
    bars = re.findall(r"(\d+) runs, (\d+) failed", svg)
    return [sum(int(b[0]) for b in bars), sum(int(b[1]) for b in bars)]


def test_each_function_has_a_chart_of_its_runs_and_failures_per_minute(alice_client):
    for n in range(2):
        send("order:created", {"order_id": n, "items": []})
    send("test:downstream", {"n": 1})
    drain()

    page = alice_client.get("/overview/").content.decode()

    assert summed_bars(chart(page, 'aria-label="on_order_created:')) == [4, 2]
    assert summed_bars(chart(page, 'aria-label="on_order_paid:')) == [2, 0]
    assert summed_bars(chart(page, 'aria-label="downstream:')) == [1, 0]
    spark = chart(page, 'aria-label="on_order_created:')
    assert spark.count('class="bar failed"') >= 1
    # The busiest function first.
    assert page.index('aria-label="on_order_created:') < page.index('aria-label="downstream:')


def test_the_overview_reads_the_hour_once_for_every_chart(alice_client, django_assert_num_queries):
    send("order:created", {"order_id": 1, "items": []})
    drain()

    # Session, user, the user's permissions (its own and its groups'), the day's and the hour's
    # counts by status, the charts, the failures.
    with django_assert_num_queries(8):
        alice_client.get("/overview/")


def test_it_works_with_no_runs_at_all(alice_client):
    page = alice_client.get("/overview/").content.decode()

    assert "No runs in the last hour." in page and "No failures." in page
