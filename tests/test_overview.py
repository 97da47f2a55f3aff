"""The overview: counts by status, runs per minute, failure rate per function, recent failures."""

import re

import pytest

from hotapp.models import Run
from runtime import executor, send
from tests.conftest import drain

pytestmark = pytest.mark.django_db


def test_it_counts_runs_by_status_and_shows_failure_rates_and_what_needs_attention(alice_client):
    for n in range(2):
        send("order:created", {"order_id": n, "items": []})  # attempt 1 fails, its retry succeeds
    send("test:always-fails", {"n": 1})  # all 3 attempts fail: needs attention
    drain()

    page = alice_client.get("/overview/").content.decode()

    assert stat(page, "succeeded") == 6  # 2 x (retry, paid, shipped)
    assert stat(page, "failed") == 1  # only the chain that ended failed
    assert "Needs attention" in page
    # The retried attempts are not hidden: 2 recovered by retry, 5 failed attempts in all.
    assert "2 failed attempts recovered by retry in the last hour" in page
    assert "5 failed attempts in all</a>" in page
    # on_order_created: 2 chains, none failed; always_fails: its 1 chain failed.
    assert rate(page, "on_order_created") == "0.0%"
    assert rate(page, "always_fails") == "100.0%"
    needing = section(page, "Needs attention</h2>")
    assert "attempt 3 failed" in needing and "card network timed out" not in needing
    # The runs may straddle a minute boundary, so add up every bar of the hour.
    assert summed_bars(chart(page, 'class="chart"')) == [11, 1]


def test_a_pending_retry_does_not_need_attention(alice_client):
    send("test:always-fails", {"n": 1})
    [first] = Run.objects.all()
    executor.execute(first.id)  # attempt 1 fails; its retry is due later

    page = alice_client.get("/overview/").content.decode()

    assert stat(page, "pending_retry") == 1 and stat(page, "failed") == 0
    assert "Nothing needs attention." in page


def stat(page: str, status: str) -> int:
    card = re.search(rf'class="card stat status-{status}".*?</a>', page, re.S).group(0)
    return int(re.search(r'<span class="stat-value">(\d+)</span>', card).group(1))


def rate(page: str, function: str) -> str:
    row = re.search(rf'<tr><td class="fn">.*?>{function}</a>.*?</tr>', page, re.S).group(0)
    return re.findall(r"(\d+\.\d)%", row)[-1] + "%"


def section(page: str, marker: str) -> str:
    return page[page.index(marker) :].split("</section>")[0]


def chart(page: str, marker: str) -> str:
    """The <svg> that carries `marker` in its opening tag."""
    return re.search(rf"<svg [^>]*{marker}[^>]*>.*?</svg>", page, re.S).group(0)


def summed_bars(svg: str) -> list[int]:
    bars = re.findall(r"(\d+) runs, (\d+) need attention", svg)
    return [sum(int(b[0]) for b in bars), sum(int(b[1]) for b in bars)]


def test_each_function_has_a_chart_of_its_runs_and_failures_per_minute(alice_client):
    for n in range(2):
        send("order:created", {"order_id": n, "items": []})
    send("test:downstream", {"n": 1})
    drain()

    page = alice_client.get("/overview/").content.decode()

    # The failed first attempts were retried and recovered: they need no attention.
    assert summed_bars(chart(page, 'aria-label="on_order_created:')) == [4, 0]
    assert summed_bars(chart(page, 'aria-label="on_order_paid:')) == [2, 0]
    assert summed_bars(chart(page, 'aria-label="downstream:')) == [1, 0]
    send("test:always-fails", {"n": 1})
    drain()
    page = alice_client.get("/overview/").content.decode()
    spark = chart(page, 'aria-label="always_fails:')
    assert summed_bars(spark) == [3, 1]
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

    assert "No runs in the last hour." in page and "Nothing needs attention." in page
