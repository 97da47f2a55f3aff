"""Held runs in a real browser: the runs list and a run's page say what each waits for, and
the list follows a held run live once it is released."""

from datetime import timedelta

import pytest
from django.utils import timezone

from hotapp.models import Run, RunStatus
from runtime import holds, send
from runtime.flow_claim import claim_flow
from tests import test_browser
from tests.test_browser import shot

pytestmark = pytest.mark.services
browser, daphne_server, page = test_browser.browser, test_browser.daphne_server, test_browser.page


def test_the_runs_list_shows_why_each_run_waits_and_follows_its_release(page):
    delayed_event = send("test:downstream", {"n": 1}, delay=600)
    send("flow:one-at-a-time", {"key": "a"})
    send("flow:one-at-a-time", {"key": "a"})
    claim_flow("browser-test", 10)  # one claimed, the other held behind it

    page.goto("/")
    assert page.locator(".badge.hold-delay").inner_text() == "delayed"
    assert page.locator(".badge.hold-concurrency").inner_text() == "concurrency"
    title = page.locator(".badge.hold-delay").get_attribute("title")
    assert title.startswith("Its event was sent with a delay; due ")
    shot(page, "runs-held")

    held = Run.objects.get(function__endswith="one_at_a_time", status=RunStatus.QUEUED)
    page.goto(f"/runs/{held.id}/")
    assert "concurrency limit is reached" in page.locator("dd.hold-reason").inner_text()

    page.goto("/")
    delayed = Run.objects.get(event_id=delayed_event)
    holds.release_due(timezone.now() + timedelta(minutes=11))
    row = page.locator(f"#run-{delayed.id}")
    row.locator(".badge.hold-delay").wait_for(state="detached", timeout=15_000)  # live
    assert "queued" in row.inner_text()
