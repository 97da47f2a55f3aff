"""send(..., delay= | at=): a delayed event is stored at once and its runs are held until due,
cancellable meanwhile; the scheduler releases them and rings their doorbells."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from hotapp.models import AuditEntry, Event, Run, RunStatus, WaitReason
from runtime import EventNotFound, cancel_event, dispatch, executor, holds, scheduler, send
from tests.conftest import drain, wait_for

pytestmark = pytest.mark.django_db


def test_a_delayed_event_is_stored_at_once_with_its_runs_held_until_due():
    before = timezone.now()
    event_id = send("test:downstream", {"n": 1}, delay=60)

    event = Event.objects.get(id=event_id)
    run = Run.objects.get(event=event)
    assert run.status == RunStatus.QUEUED and run.wait_reason == WaitReason.DELAY
    assert event.deliver_at == run.available_at
    assert (
        before + timedelta(seconds=59) < run.available_at < timezone.now() + timedelta(seconds=61)
    )


def test_a_worker_does_not_claim_a_held_run_whatever_doorbell_comes():
    event_id = send("test:downstream", {"n": 1}, delay=60)
    run = Run.objects.get(event_id=event_id)

    assert executor.claim_batch("token", 10) == []
    assert executor.claim(run.id, "token") == []
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


def test_release_due_leaves_runs_not_due_yet_alone_then_releases_them():
    event_id = send("test:downstream", {"n": 1}, at=timezone.now() + timedelta(minutes=5))
    run = Run.objects.get(event_id=event_id)

    assert holds.release_due() == 0
    assert holds.release_due(timezone.now() + timedelta(minutes=6)) == 1

    run.refresh_from_db()
    assert (run.status, run.wait_reason, run.available_at) == (RunStatus.QUEUED, "", None)
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.result == {"n": 1}


def test_a_zero_delay_or_a_time_in_the_past_sends_at_once():
    for event_id in (
        send("test:downstream", {}, delay=0),
        send("test:downstream", {}, at=datetime(2020, 1, 1, tzinfo=UTC)),
    ):
        run = Run.objects.get(event_id=event_id)
        assert (run.wait_reason, run.available_at) == ("", None)
        assert Event.objects.get(id=event_id).deliver_at is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delay": 5, "at": datetime(2030, 1, 1, tzinfo=UTC)}, "not both"),
        ({"delay": -1}, "must not be negative"),
        ({"delay": float("nan")}, "must not be negative"),
        ({"delay": "5m"}, "takes a timedelta or a number of seconds"),
        ({"at": datetime(2030, 1, 1)}, "time-zone-aware"),
    ],
)
def test_a_bad_delay_is_refused_with_nothing_written(options, message):
    with pytest.raises(ValueError, match=message):
        send("test:downstream", {"n": 1}, **options)
    assert not Event.objects.exists() and not Run.objects.exists()


def test_cancel_event_cancels_its_held_runs_with_an_audit_entry_each():
    event_id = send("test:fanout", {"n": 1}, delay=60)

    assert cancel_event(event_id) == 2

    runs = Run.objects.filter(event_id=event_id)
    assert {run.status for run in runs} == {RunStatus.CANCELLED}
    assert AuditEntry.objects.filter(run__in=runs, action="cancel").count() == 2
    assert holds.release_due(timezone.now() + timedelta(minutes=2)) == 0


def test_cancel_event_leaves_runs_already_released_alone():
    event_id = send("test:downstream", {"n": 1}, delay=60)
    holds.release_due(timezone.now() + timedelta(minutes=2))

    assert cancel_event(event_id) == 0
    assert Run.objects.get(event_id=event_id).status == RunStatus.QUEUED


def test_cancel_event_of_an_unknown_event_says_so():
    with pytest.raises(EventNotFound):
        cancel_event("0190a8a4-0000-7000-8000-000000000000")
    with pytest.raises(EventNotFound):
        cancel_event("not-an-id")


def test_a_delay_sent_from_a_handler_is_held_once_the_run_succeeds():
    send("test:sends-later", {"delay": 60})
    drain()

    delayed = Run.objects.get(function__endswith=".downstream")
    assert delayed.status == RunStatus.QUEUED and delayed.wait_reason == WaitReason.DELAY
    assert delayed.event.source_run.function.endswith("sends_later")


@pytest.mark.django_db(transaction=True)
def test_the_scheduler_delivers_a_delayed_event_to_a_real_worker(celery_worker):
    stop = threading.Event()
    loop = threading.Thread(target=scheduler.run_forever, args=(stop, 60), daemon=True)
    loop.start()
    try:
        event_id = send("test:downstream", {"n": 7}, delay=1)
        dispatch.flush()
        run = wait_for(
            lambda: Run.objects.filter(event_id=event_id, status=RunStatus.SUCCEEDED).first(),
            what="the delayed run to succeed",
        )
    finally:
        stop.set()
        loop.join(10)
    assert run.result == {"n": 7}
    assert run.started_at >= Event.objects.get(id=event_id).deliver_at


def test_the_runs_list_and_the_event_page_show_the_hold_and_cancel_it(alice_client):
    event_id = send("test:downstream", {"n": 1}, delay=600)

    listing = alice_client.get("/").content.decode()
    assert "hold-delay" in listing and "delayed" in listing
    run = Run.objects.get(event_id=event_id)
    page = alice_client.get(f"/runs/{run.id}/").content.decode()
    assert "Its event was sent with a delay; due" in page
    event_page = alice_client.get(f"/events/{event_id}/").content.decode()
    assert "Cancel delivery" in event_page

    response = alice_client.post(f"/events/{event_id}/cancel/", follow=True)
    assert "Delivery cancelled: 1 held run(s) cancelled." in response.content.decode()
    assert "cancelled before delivery; was due" in response.content.decode()
    assert Run.objects.get(event_id=event_id).status == RunStatus.CANCELLED


def test_a_viewer_sees_no_cancel_button_and_may_not_cancel(bob_client):
    event_id = send("test:downstream", {"n": 1}, delay=600)

    assert "Cancel delivery" not in bob_client.get(f"/events/{event_id}/").content.decode()
    assert bob_client.post(f"/events/{event_id}/cancel/").status_code == 403
    assert Run.objects.get(event_id=event_id).status == RunStatus.QUEUED


def test_the_api_shows_the_hold_and_cancels_the_event(alice_client):
    event_id = send("test:downstream", {"n": 1}, delay=600)

    body = alice_client.get(f"/api/events/{event_id}/").json()
    assert body["deliver_at"] is not None
    rows = alice_client.get("/api/runs/").json()["results"]
    assert rows[0]["wait_reason"] == "delay" and rows[0]["available_at"] == body["deliver_at"]

    response = alice_client.post(f"/api/events/{event_id}/cancel/")
    assert response.status_code == 200 and response.json()["cancelled_runs"] == 1
    missing = alice_client.post("/api/events/0190a8a4-0000-7000-8000-000000000000/cancel/")
    assert missing.status_code == 404


def test_the_cli_sends_later_and_cancels(capsys):
    call_command("hot", "send", "test:downstream", '{"n": 2}', "--delay", "120")
    event_id = capsys.readouterr().out.strip()
    assert Run.objects.get(event_id=event_id).wait_reason == WaitReason.DELAY

    call_command("hot", "cancel-event", event_id)
    assert "cancelled 1 held run(s)" in capsys.readouterr().out


def test_the_cli_refuses_a_time_without_iso_form():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not an ISO 8601 time"):
        call_command("hot", "send", "test:downstream", "{}", "--at", "tomorrow")


def test_cancel_event_also_cancels_a_debounced_run_held_past_the_delay():
    event_id = send("flow:debounced", {"key": "k"}, delay=60)
    run = Run.objects.get(event_id=event_id)
    assert run.wait_reason == WaitReason.DEBOUNCE  # its quiet period starts when it is due

    assert cancel_event(event_id) == 1
    assert Run.objects.get(id=run.id).status == RunStatus.CANCELLED
