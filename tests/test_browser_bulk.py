"""A bulk retry from the runs page in a real browser: filter, review the count, confirm, watch."""

import pytest
from django.utils import timezone

from hotapp.models import BulkOperation, Run
from runtime import bulk
from tests import test_browser
from tests.conftest import wait_for
from tests.test_browser import live_dot_is_on, shot

pytestmark = pytest.mark.services
# The fixtures, shared: a live Daphne server, Chromium, and a page logged in as alice.
browser, daphne_server, page = test_browser.browser, test_browser.daphne_server, test_browser.page


def test_a_user_retries_every_failed_run_of_a_filter_and_watches_the_operation(
    page, celery_worker, make_runs
):
    make_runs(450)
    make_runs(3, status="succeeded")

    page.goto("/")
    live_dot_is_on(page)
    page.check("input[name=status][value=failed]")
    page.wait_for_url("**/?status=failed*")
    page.wait_for_function("document.querySelectorAll('#run-rows tr.row-succeeded').length === 0")
    shot(page, "bulk-runs-page")

    # The control carries the filter the list shows now, changed without a page load.
    page.select_option("#bulk-action", "retry")
    page.click(".bulk-bar button:has-text('Review')")
    page.wait_for_url("**/bulk/new/?*action=retry*")
    assert "status=failed" in page.url
    count = page.inner_text(".bulk-count")
    assert count == "This will retry 450 failed runs matching: status=failed."
    shot(page, "bulk-confirm")
    assert not BulkOperation.objects.exists()

    page.click("button:has-text('Confirm: retry 450 runs')")
    page.wait_for_url("**/bulk/*-*/")
    page.wait_for_selector("#bulk-live[data-status=done]", timeout=30_000)
    shot(page, "bulk-done")
    assert "450 retried" in page.inner_text("#bulk-live")
    assert page.inner_text("#bulk-live .bulk-numbers") == "450 of 450 handled"
    operation = BulkOperation.objects.get()
    assert (operation.via, operation.created_by_name, operation.done) == ("page", "alice", 450)
    wait_for(
        lambda: Run.objects.filter(attempt=2, status="succeeded").count() == 450,
        what="the retries to run",
    )

    page.click("a:has-text('Bulk operations')")
    page.wait_for_selector(f"#bulk-{operation.id}")
    shot(page, "bulk-list")


def test_an_operations_page_follows_its_progress_without_a_reload(page, make_runs):
    make_runs(3)
    operation = bulk.start_bulk("cancel", {"status": ["queued"], "q": "n:1"}, ring=False)
    # Halfway through, as a worker would leave it between two batches.
    BulkOperation.objects.filter(id=operation.id).update(
        status="running", total=450, done=200, skipped=3, started_at=timezone.now()
    )

    page.goto(f"/bulk/{operation.id}/")
    page.wait_for_selector("#bulk-live[data-status=running]")
    page.evaluate("window.__notReloaded = true")
    shot(page, "bulk-running")
    assert page.inner_text("#bulk-live .bulk-numbers") == "203 of 450 handled"

    BulkOperation.objects.filter(id=operation.id).update(done=400)
    page.wait_for_function(
        "document.querySelector('#bulk-live .bulk-numbers').innerText === '403 of 450 handled'"
    )
    assert page.evaluate("window.__notReloaded") is True
    page.click("button:has-text('Stop')")
    page.wait_for_selector("#bulk-live[data-status=cancelled]")
    assert "Stopped. The batches done so far stay done." in page.inner_text("#bulk-live")
    shot(page, "bulk-stopped")
