"""The events list, live, in a real browser (fixtures from tests/test_browser.py)."""

import pytest

from hotapp.models import Event, Run
from runtime import send
from tests import test_browser
from tests.conftest import wait_for
from tests.test_browser import SHOTS, live_dot_is_on, shot

pytestmark = pytest.mark.services
# The fixtures, shared: a live Daphne server, Chromium, and a page logged in as alice.
browser, daphne_server, page = test_browser.browser, test_browser.daphne_server, test_browser.page


def event_rows(page) -> list[str]:
    return page.eval_on_selector_all("#event-rows tr[id^=event-]", "rows => rows.map(r => r.id)")


def test_the_events_page_shows_new_events_and_their_runs_without_a_reload(page, celery_worker):
    send("nobody:listens", {"note": "before the page opened"})
    page.goto("/events/")
    live_dot_is_on(page)
    page.evaluate("window.__notReloaded = true")

    created = send("order:created", {"order_id": 41, "items": [{"sku": "mug", "price": 3}]})
    page.locator(f"#event-{created}").wait_for(timeout=10_000)
    # The workflow's next events arrive as its runs succeed, newest first, and the first event's
    # runs cell follows its runs: the first attempt fails on purpose, its retry succeeds.
    shipped = wait_for(
        lambda: Event.objects.filter(type="order:shipped").first(), what="the workflow's last event"
    )
    page.locator(f"#event-{shipped.id}").wait_for(timeout=10_000)
    page.locator(f"#event-{created} .badge.status-succeeded").wait_for(timeout=15_000)
    page.locator(f"#event-{created} .badge.status-failed").wait_for(timeout=5_000)
    newest = [f"event-{i}" for i in Event.objects.newest_first().values_list("id", flat=True)]
    page.wait_for_function(
        """(ids) => {
          const rows = [...document.querySelectorAll('#event-rows tr[id^=event-]')];
          return rows.length === ids.length && rows.every((tr, i) => tr.id === ids[i]);
        }""",
        arg=newest,
        timeout=10_000,
    )
    assert page.evaluate("window.__notReloaded") is True
    shot(page, "events-live")


def test_a_filtered_events_page_takes_only_matching_events(page):
    page.goto("/events/?type=order%3Apaid")
    live_dot_is_on(page)
    send("nobody:listens")
    paid = send("order:paid", {"order_id": 8})
    page.locator(f"#event-{paid}").wait_for(timeout=10_000)
    assert event_rows(page) == [f"event-{paid}"]
    assert page.locator(".empty-row").count() == 0


def test_new_events_wait_behind_a_pill_while_the_user_is_scrolled_away(page):
    for n in range(60):  # enough rows to scroll
        send("nobody:listens", {"n": n})
    page.goto("/events/")
    live_dot_is_on(page)
    page.mouse.wheel(0, 2000)
    page.wait_for_function("window.scrollY > 100")

    late = send("nobody:listens", {"n": "late"})
    pill = page.locator("#new-events")
    pill.wait_for(state="visible", timeout=10_000)
    assert pill.inner_text() == "Paused · 1 new event ↑"
    assert page.locator(f"#event-{late}").count() == 0
    # In sight where the reader is, not at the top of the list they scrolled away from.
    box = pill.bounding_box()
    assert box is not None and 0 <= box["y"] < 100
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "events-paused.png"))  # the window, as the reader sees it
    pill.click()
    page.locator(f"#event-{late}").wait_for(timeout=5_000)
    assert event_rows(page)[0] == f"event-{late}"
    assert len(event_rows(page)) == 50  # one page: the oldest row fell to the next page
    assert not Run.objects.exists()
