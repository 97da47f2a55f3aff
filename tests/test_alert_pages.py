"""The alerts page: channels, delivery history, "Send test alert", and who may see and press it;
and, in a real browser, a test alert going out while the page watches."""

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from hotapp.models import AlertDelivery
from runtime import alert_delivery, cancel_run
from tests import test_browser
from tests.conftest import wait_for
from tests.test_browser import live_dot_is_on, shot

CHANNELS = [
    {"name": "ops", "webhook": "https://hooks.example.com/services/T000/SECRET"},
    {"name": "oncall", "email": ["a@example.com"], "on": ["failed"], "functions": ["billing.*"]},
]
browser, daphne_server, page = test_browser.browser, test_browser.daphne_server, test_browser.page


def text(response) -> str:
    """The page's text without tags, spaces squeezed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


@pytest.fixture
def channels(settings):
    settings.HOT = {**settings.HOT, "ALERT_CHANNELS": CHANNELS}


@pytest.mark.django_db
def test_the_page_shows_each_channel_without_its_webhook_secret(alice_client, channels):
    response = alice_client.get("/alerts/")
    assert response.status_code == 200
    page = text(response)
    assert "ops webhook https://hooks.example.com/…" in page
    assert "SECRET" not in response.content.decode()
    assert "oncall email a@example.com" in page
    assert "On failed Functions billing.*" in page
    assert "Functions every function" in page
    assert page.count("Send test alert") == 2
    assert '<a href="/alerts/" aria-current="page">Alerts</a>' in response.content.decode()


@pytest.mark.django_db
def test_the_history_links_each_alert_to_its_run_with_its_answer_and_error(
    alice_client, channels, settings, make_runs
):
    settings.HOT = {**settings.HOT, "ALERT_MAX_ATTEMPTS": 1}
    [run] = make_runs(1, status="queued")
    cancel_run(run.id)
    # The webhook's host does not exist: the attempt fails and, with one attempt allowed, ends.
    settings.HOT["ALERT_CHANNELS"] = [{"name": "ops", "webhook": "http://127.0.0.1:1/hook"}]
    alert_delivery.deliver_due()

    response = alice_client.get("/alerts/?channel=ops")
    row = response.content.decode().split(f'id="delivery-{AlertDelivery.objects.get().id}"')[1]
    row = row[: row.index("</tr>")]
    assert f'href="/runs/{run.id}/"' in row
    assert "Connection refused" in row
    assert row.startswith(' data-status="failed"')
    assert ">Failed<" in row and '<td class="num">1</td>' in row
    # Nothing left on its way: the history does not poll.
    assert 'data-following="false"' in response.content.decode()


@pytest.mark.django_db
def test_the_history_pages_with_a_cursor_and_filters_by_status(alice_client, channels):
    now = timezone.now()
    for i in range(55):
        AlertDelivery.objects.create(
            channel="ops",
            kind="test",
            chain_id=uuid.uuid4(),
            status="sent" if i % 2 else "failed",
            created_at=now - timedelta(seconds=i),
        )
    first = alice_client.get("/alerts/").content.decode()
    assert first.count('id="delivery-') == 50
    older = re.search(r'href="(\?after=[^"]+)">Older deliveries', first).group(1)
    second = alice_client.get("/alerts/" + older.replace("&amp;", "&")).content.decode()
    assert second.count('id="delivery-') == 5
    failed = alice_client.get("/alerts/?status=failed").content.decode()
    assert failed.count('id="delivery-') == 28 and 'data-status="sent"' not in failed
    broken = alice_client.get("/alerts/?after=nonsense")
    assert "This page link is broken" in broken.content.decode()


@pytest.mark.django_db
def test_an_htmx_poll_gets_the_history_region_alone(alice_client, channels):
    response = alice_client.get(
        "/alerts/", headers={"HX-Request": "true", "HX-Target": "alert-history"}
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="alert-history"')
    # The channels' figures come along, swapped in out of band.
    assert '<section id="alert-channels" hx-swap-oob="true">' in body
    assert "<html" not in body


@pytest.mark.django_db
def test_alice_sends_a_test_alert(alice_client, channels):
    response = alice_client.post("/alerts/ops/test/")
    assert response.status_code == 302 and response.url == "/alerts/"
    delivery = AlertDelivery.objects.get()
    assert (delivery.channel, delivery.kind, delivery.status) == ("ops", "test", "pending")
    assert delivery.payload["requested_by"] == "alice"
    page = text(alice_client.get("/alerts/"))
    assert "Test alert queued for ops; its delivery shows below." in page
    assert alice_client.post("/alerts/nobody/test/").status_code == 404
    assert alice_client.get("/alerts/ops/test/").status_code == 405


@pytest.mark.django_db
def test_bob_sees_the_page_but_may_not_send_a_test_alert(bob_client, channels):
    assert "Send test alert" not in bob_client.get("/alerts/").content.decode()
    assert bob_client.post("/alerts/ops/test/").status_code == 403
    assert not AlertDelivery.objects.exists()


@pytest.mark.django_db
def test_dave_and_charlie_may_not_see_the_page(dave_client, channels):
    assert dave_client.get("/alerts/").status_code == 403
    response = Client().get("/alerts/")
    assert response.status_code == 302 and response.url.startswith("/login/")


@pytest.mark.django_db
def test_the_page_says_how_to_configure_a_channel_when_there_is_none(alice_client):
    assert "No alert channels are configured" in text(alice_client.get("/alerts/"))


# In a real browser: Daphne in a process of its own (its channels from HOT_ALERT_CHANNELS), a
# Celery worker in this process (the same channels in its settings), a real webhook receiver.


@pytest.fixture
def browser_channels(receiver, settings, monkeypatch):
    configured = [
        {"name": "ops", "webhook": receiver.url},
        {"name": "oncall", "email": ["oncall@example.com"], "on": ["failed"]},
    ]
    monkeypatch.setenv("HOT_ALERT_CHANNELS", json.dumps(configured))
    settings.HOT = {**settings.HOT, "ALERT_CHANNELS": configured}
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return configured


@pytest.mark.services
def test_a_test_alert_sent_from_the_page_shows_up_as_sent_without_a_reload(
    browser_channels, page, celery_worker, receiver, make_runs
):
    # browser_channels comes first: Daphne starts with its HOT_ALERT_CHANNELS.
    [run] = make_runs(1, status="queued")
    cancel_run(run.id)
    wait_for(lambda: AlertDelivery.objects.filter(status="sent").exists(), what="the alert")

    page.goto("/")
    live_dot_is_on(page)
    page.click("header nav a:has-text('Alerts')")
    page.wait_for_url("**/alerts/")
    page.wait_for_selector("#channel-ops")
    assert "oncall@example.com" in page.inner_text("#channel-oncall")
    cancelled = page.locator("#alert-history tr[data-status=sent]")
    assert cancelled.count() == 1
    assert "downstream" in cancelled.inner_text()

    page.click("#channel-ops button:has-text('Send test alert')")
    page.wait_for_url("**/alerts/")
    page.wait_for_selector(".messages >> text=Test alert queued for ops")
    page.evaluate("window.__notReloaded = true")
    # The receiver gets it from the worker; the history follows without a reload.
    wait_for(lambda: len(receiver.received) == 2, what="the test alert at the receiver")
    page.wait_for_function(
        "document.querySelectorAll('#alert-history tr[data-status=sent]').length === 2",
        timeout=15_000,
    )
    page.wait_for_selector("#channel-ops .channel-day >> text=2 sent")
    assert page.evaluate("window.__notReloaded") is True
    assert receiver.received[1].body["text"] == "Test alert from Hot to channel ops by alice"
    page.wait_for_selector("#alert-history[data-following=false]")
    shot(page, "alerts-page")

    page.click(f"#alert-history a[href='/runs/{run.id}/']")
    page.wait_for_url(f"**/runs/{run.id}/")


@pytest.mark.django_db
def test_every_time_on_the_alerts_page_names_its_zone(alice_client, channels):
    from tests.test_time_zones import time_elements, unzoned_times

    now = timezone.now()
    AlertDelivery.objects.create(
        channel="ops", kind="test", chain_id=uuid.uuid4(), status="sent", sent_at=now
    )
    AlertDelivery.objects.create(
        channel="ops",
        kind="test",
        chain_id=uuid.uuid4(),
        attempts=1,
        last_error="HTTP 502 Bad Gateway at 12:00",
        next_attempt_at=now + timedelta(seconds=20),
    )
    page = alice_client.get("/alerts/").content.decode()
    assert len(time_elements(page)) == 5  # two created, one sent, one next try, last sent
    for _iso, shown in time_elements(page):
        assert shown.endswith(" UTC")
    # The receiver's own words may hold a clock time; they are not the page's.
    page = page.replace("HTTP 502 Bad Gateway at 12:00", "")
    assert unzoned_times(page, "UTC") == []
