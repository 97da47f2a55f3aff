"""The tasks and schedules pages in a real browser, with more on them than a demo has: many
checkpoints and messages, long names, big JSON states (fixtures from tests/test_browser.py)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from hotapp.models import Run, Schedule, Task, TaskCheckpoint, TaskMessage, TaskStatus
from runtime import schedules, start
from tests import task_handlers, test_browser
from tests.test_browser import shot

pytestmark = pytest.mark.services
# The fixtures, shared: a live Daphne server, Chromium, and a page logged in as alice.
browser, daphne_server, page = test_browser.browser, test_browser.daphne_server, test_browser.page

BIG_STATE = {
    "cursor": "x" * 300,
    "customers": [
        {"id": n, "email": f"customer{n}@example.com", "balance": n * 3.5} for n in range(60)
    ],
    "nested": {"a": {"b": {"c": {"d": list(range(40))}}}},
}


@pytest.fixture
def busy_task():
    """A long-named task with 130 checkpoints and 520 messages, some of them large."""
    handle = start(task_handlers.a_task_with_a_long_name, {"ledger": "2026-01", "note": "y" * 400})
    Task.objects.filter(id=handle.id).update(status=TaskStatus.RUNNING)
    TaskCheckpoint.objects.bulk_create(
        TaskCheckpoint(task_id=handle.id, state={**BIG_STATE, "step": n}) for n in range(130)
    )
    TaskMessage.objects.bulk_create(
        TaskMessage(
            task_id=handle.id,
            direction="in" if n % 3 == 0 else "out",
            body={"n": n, "payload": "z" * (n % 7) * 60} if n % 50 else BIG_STATE,
        )
        for n in range(520)
    )
    return handle


def test_a_busy_task_reads_well_on_its_page_and_in_the_list(page, busy_task):
    page.goto(f"/tasks/{busy_task.id}/")
    page.locator("ol.messages-flow li.older", has_text="20 older messages").wait_for()
    page.locator("ol.timeline li.older", has_text="30 older checkpoints").wait_for()
    assert page.locator("ol.messages-flow li:not(.older)").count() == 500
    shot(page, "task-busy")
    assert no_horizontal_scroll(page)
    # The lists scroll in boxes of their own, the messages opened at the newest: the send form
    # stays near them rather than thousands of pixels down.
    assert page.evaluate("document.documentElement.scrollHeight") < 2500
    assert page.evaluate(
        "(b => b.scrollTop + b.clientHeight >= b.scrollHeight - 8)"
        "(document.querySelector('ol.messages-flow'))"
    )
    assert page.locator("ol.timeline strong").first.inner_text() == "#130"

    page.goto("/tasks/")
    row = page.locator(f"#task-{busy_task.id}")
    assert row.locator("td.num").nth(1).inner_text() == "130"
    shot(page, "tasks")
    assert no_horizontal_scroll(page) and no_header_cut_off(page)


def test_the_tasks_list_shows_a_new_task_without_a_reload(page, busy_task):
    page.goto("/tasks/")
    handle = start(task_handlers.waits_for_mail)

    page.locator(f"#task-{handle.id}").wait_for(timeout=15_000)
    handle.cancel()  # not started yet: cancelled at once
    page.locator(f"#task-{handle.id} .badge.task-cancelled").wait_for(timeout=15_000)


def test_the_schedules_page_with_long_names_and_many_runs(page):
    schedules.sync()
    long_name = "tests.task_handlers.refresh_the_exchange_rates_of_every_currency_pair_we_quote"
    Schedule.objects.filter(name=long_name).update(
        backfill=8, last_tick_at=timezone.now() - timedelta(days=7)
    )
    assert schedules.fire_due() == 8
    for n, run in enumerate(Run.objects.filter(function=long_name)):
        Run.objects.filter(id=run.id).update(status=["succeeded", "failed", "running"][n % 3])

    page.goto("/schedules/")
    card = page.locator("section.schedule", has_text="refresh_the_exchange_rates")
    assert card.locator("a .badge").count() == 8
    shot(page, "schedules-busy")
    assert no_horizontal_scroll(page)


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def no_header_cut_off(page) -> bool:
    return page.evaluate(
        "[...document.querySelectorAll('th')].every(th => th.scrollWidth <= th.clientWidth)"
    )
