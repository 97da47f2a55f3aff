"""A waiting task's page in a real browser: what it waits for, live as the wait ends."""

import pytest

from hotapp.models import TaskStatus
from runtime import send, start
from tests import task_handlers, test_browser
from tests.test_browser import shot
from tests.test_waits import scheduler_steps

pytestmark = pytest.mark.services
browser, daphne_server, page = test_browser.browser, test_browser.daphne_server, test_browser.page


def test_a_task_page_shows_its_wait_and_then_the_matched_event_live(page, worker_process):
    worker_process()
    handle = start(task_handlers.waits_for_payment, {"order": 77, "timeout": 3600})
    page.goto(f"/tasks/{handle.id}/")
    open_wait = page.locator("dd.open-wait")
    open_wait.wait_for()
    assert 'wait for test:paid matching {"order": 77} until' in open_wait.inner_text()
    assert page.locator("ol.waits li").count() == 1
    shot(page, "task-waiting")

    send("test:paid", {"order": 77, "amount": 5})
    scheduler_steps()

    page.locator("h1 .badge.task-completed").wait_for(timeout=15_000)  # live, no reload
    assert page.locator("dd.open-wait").count() == 0
    assert page.locator("ol.waits li .badge", has_text="Matched").count() == 1
    shot(page, "task-waited")
    assert handle.status == TaskStatus.COMPLETED
