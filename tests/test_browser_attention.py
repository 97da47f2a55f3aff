"""What needs attention, in a real browser: the overview counts chains, the runs list's "Needs
attention" drops an attempt live once it is retried, and every failed attempt stays one
checkbox away (fixtures from tests/test_browser.py)."""

import pytest

from hotapp.models import Run
from runtime import retry_run, send
from tests import test_browser
from tests.conftest import wait_for
from tests.test_browser import live_dot_is_on, shot

pytestmark = pytest.mark.services
# The fixtures, shared: a live Daphne server, Chromium, and a page logged in as alice.
browser, daphne_server, page = test_browser.browser, test_browser.daphne_server, test_browser.page

ROWS = "document.querySelectorAll('#run-rows tr[id^=run-]').length"


def test_operators_see_what_needs_attention_not_recovered_attempts(page, celery_worker):
    send("order:created", {"order_id": 1, "items": [{"sku": "mug", "price": 3}]})  # recovers
    send("test:always-fails", {"n": 1})  # 3 attempts, all failed
    send("test:fixed-by-hand", {"order_id": 77})  # fails, no automatic retry
    wait_for(
        lambda: (
            Run.objects.filter(function__endswith="on_order_shipped", status="succeeded").exists()
            and Run.objects.filter(
                function__endswith="always_fails", attempt=3, status="failed"
            ).exists()
            and Run.objects.filter(function__endswith="fixed_by_hand", status="failed").exists()
        ),
        what="the chains to settle",
    )

    page.goto("/overview/")
    card = page.locator("a.stat.status-failed")
    assert card.locator(".stat-label").inner_text() == "Needs attention"
    assert card.locator(".stat-value").inner_text() == "2"
    note = page.locator(".recovered-note").inner_text()
    assert "1 failed attempt recovered by retry in the last hour" in note
    assert "5 failed attempts in all" in note
    assert page.locator("section:has(h2:has-text('Needs attention')) tbody tr").count() == 2
    assert all(t.endswith(" UTC") for t in page.locator("td.when time").all_inner_texts())
    shot(page, "overview-attention")

    page.goto("/?status=failed")
    live_dot_is_on(page)
    assert page.locator("label.chip.status-failed").inner_text().strip() == "Needs attention"
    page.wait_for_function(f"{ROWS} === 2")
    shot(page, "runs-needs-attention")

    # Retried by hand, the attempt leaves "Needs attention" live; its retry succeeds.
    fixed = Run.objects.get(function__endswith="fixed_by_hand")
    retry_run(fixed.id)
    page.wait_for_function(f"{ROWS} === 1", timeout=15_000)
    wait_for(lambda: Run.objects.filter(origin_run=fixed, status="succeeded").exists())

    # Every failed attempt, one checkbox away, the retried ones marked.
    page.uncheck("input[name=status][value=failed]")
    page.check("input[name=status][value=failed_attempt]")
    page.wait_for_url("**/?status=failed_attempt*")
    page.wait_for_function(f"{ROWS} === 5")
    assert page.locator("#run-rows .badge.superseded").count() == 4
    assert all(t.endswith(" UTC") for t in page.locator("#run-rows td.when time").all_inner_texts())
    shot(page, "runs-failed-attempts")

    page.goto(f"/runs/{fixed.id}/")
    page.wait_for_selector(".chain-outcome:has-text('Recovered: attempt 2 succeeded')")
    shot(page, "run-recovered")
