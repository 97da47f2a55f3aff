"""Failure alerts: raised with the change that ends a chain failed or a run cancelled, delivered
to a real local webhook receiver and a real SMTP server, retried, de-duplicated, rate-limited."""

import json
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core import mail
from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from hotapp.apps import check_alert_channels
from hotapp.models import AlertDelivery, Run, RunStatus
from runtime import alert_delivery, alerts, bulk, cancel_run, executor, retry_run, send, sweeper
from tests.alert_receivers import SmtpReceiver, free_port
from tests.conftest import ROOT, drain, wait_for

pytestmark = pytest.mark.services


@pytest.fixture
def configure(settings):
    """Set HOT["ALERT_CHANNELS"] (and any other HOT key) for the test."""

    def set_channels(*channels, **hot):
        settings.HOT = {
            **settings.HOT,
            "ALERT_CHANNELS": list(channels),
            "ALERT_BASE_URL": "https://hot.example.com",
            **hot,
        }

    return set_channels


def fail_a_chain() -> Run:
    """A run of tests.handlers.always_fails through all three of its attempts (Retry(2));
    returns the last."""
    send("test:always-fails", {"order": 7})
    drain()
    return Run.objects.get(function="tests.handlers.always_fails", attempt=3)


def test_a_chain_whose_last_attempt_fails_posts_one_alert_to_the_webhook(db, configure, receiver):
    configure({"name": "ops", "webhook": receiver.url})
    last = fail_a_chain()
    first = Run.objects.get(function="tests.handlers.always_fails", attempt=1)

    # The outbox row committed with the failure; nothing has been sent yet.
    delivery = AlertDelivery.objects.get()
    assert (delivery.channel, delivery.kind, delivery.status) == ("ops", "failed", "pending")
    assert (delivery.run_id, delivery.chain_id) == (last.id, first.id)
    assert receiver.received == []

    assert alert_delivery.deliver_due() == 1

    [request] = receiver.received
    assert request.path == "/hook"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Hot-Delivery"] == str(delivery.id)
    body = request.body
    assert body["kind"] == "failed"
    assert body["channel"] == "ops"
    assert body["text"] == (
        "Run of tests.handlers.always_fails failed (attempt 3): "
        "tests.handlers.Boom: attempt 3 failed"
    )
    run = body["run"]
    assert run["id"] == str(last.id)
    assert run["url"] == f"https://hot.example.com/runs/{last.id}/"
    assert (run["function"], run["status"], run["attempt"]) == (
        "tests.handlers.always_fails",
        "failed",
        3,
    )
    assert run["chain_id"] == str(first.id)
    assert (run["error_type"], run["error_message"]) == ("tests.handlers.Boom", "attempt 3 failed")
    assert run["event_type"] == "test:always-fails"
    assert run["finished_at"] == last.finished_at.isoformat()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("sent", 1, 200)
    assert delivery.sent_at is not None and delivery.last_error == ""


def test_an_attempt_with_a_retry_pending_raises_no_alert(db, configure, receiver):
    configure({"name": "ops", "webhook": receiver.url})
    send("test:always-fails", {})
    run = Run.objects.get()
    executor.execute(run.id)
    assert Run.objects.get().status == RunStatus.PENDING_RETRY
    assert not AlertDelivery.objects.exists()
    # Its promotion ends it failed *and superseded*: still no alert.
    drain()
    assert AlertDelivery.objects.count() == 1
    assert AlertDelivery.objects.get().run.attempt == 3


def test_a_receiver_that_fails_first_gets_the_alert_on_a_later_attempt(db, configure, receiver):
    configure({"name": "ops", "webhook": receiver.url}, ALERT_RETRY_DELAY_SECONDS=30)
    receiver.answers = [500, 503]
    fail_a_chain()

    alert_delivery.deliver_due()
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, 500)
    assert delivery.last_error == "HTTP 500 Internal Server Error: receiver says no"
    first_wait = delivery.next_attempt_at - delivery.updated_at
    assert first_wait == timedelta(seconds=30)
    # Not due yet: nothing is sent again.
    assert alert_delivery.deliver_due() == 0

    later = delivery.next_attempt_at + timedelta(seconds=1)
    alert_delivery.deliver_due(now=later)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 2, 503)
    assert delivery.next_attempt_at - later == timedelta(seconds=60)  # the wait doubles

    alert_delivery.deliver_due(now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("sent", 3, 200)
    assert delivery.last_error == ""
    assert len(receiver.received) == 3
    assert {r.body["delivery_id"] for r in receiver.received} == {str(delivery.id)}


def test_an_alert_is_given_up_after_its_last_attempt_or_a_refusal(db, configure, receiver):
    configure(
        {"name": "ops", "webhook": receiver.url},
        {"name": "gone", "webhook": "http://127.0.0.1:1/nobody-listens"},
        ALERT_MAX_ATTEMPTS=2,
        ALERT_RETRY_DELAY_SECONDS=1,
    )
    receiver.answers = [404]
    fail_a_chain()

    alert_delivery.deliver_due()
    refused = AlertDelivery.objects.get(channel="ops")
    # A 404 is the receiver saying the request is wrong: no retry fixes that.
    assert (refused.status, refused.attempts, refused.response_status) == ("failed", 1, 404)
    unreachable = AlertDelivery.objects.get(channel="gone")
    assert (unreachable.status, unreachable.attempts) == ("pending", 1)
    assert "Connection refused" in unreachable.last_error

    alert_delivery.deliver_due(now=timezone.now() + timedelta(seconds=5))
    unreachable.refresh_from_db()
    assert (unreachable.status, unreachable.attempts) == ("failed", 2)
    assert unreachable.next_attempt_at is None


def test_one_chain_raises_one_alert_per_kind_and_channel(db, configure, receiver):
    configure({"name": "ops", "webhook": receiver.url}, {"name": "mail", "email": ["a@b.example"]})
    last = fail_a_chain()
    # Retried by hand, it fails again: the same chain, the same kind, no second alert.
    retry_run(last.id)
    drain()
    assert Run.objects.filter(status="failed", is_superseded=False).get().attempt == 4
    assert sorted(AlertDelivery.objects.values_list("channel", "kind")) == [
        ("mail", "failed"),
        ("ops", "failed"),
    ]
    # Recording the same change again (a second sweeper, say) is a no-op too.
    alerts._insert([Run.objects.get(attempt=4)], alerts.channels())
    assert AlertDelivery.objects.count() == 2


def test_the_database_refuses_a_second_alert_for_a_chain_kind_and_channel(db, make_runs):
    [run] = make_runs(1)
    fields = {"channel": "ops", "kind": "failed", "chain_id": run.id, "run": run}
    AlertDelivery.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        AlertDelivery.objects.create(**fields)


def test_alerts_beyond_the_rate_limit_are_held_back_and_summed_up_once(
    db, configure, receiver, make_runs
):
    configure({"name": "ops", "webhook": receiver.url, "rate_limit": 3})
    runs = make_runs(7, status="queued")
    for run in runs:
        cancel_run(run.id)
    assert AlertDelivery.objects.filter(kind="cancelled").count() == 7

    now = timezone.now()
    assert alert_delivery.deliver_due(now=now) == 3
    statuses = dict(
        AlertDelivery.objects.filter(kind="cancelled").values_list("status").annotate(n=Count("id"))
    )
    assert statuses == {"sent": 3, "suppressed": 4}
    held = AlertDelivery.objects.filter(status="suppressed").first()
    assert held.last_error == "Held back by the rate limit (3 per 60 s); counted in a summary"
    summary = AlertDelivery.objects.get(kind="summary")
    assert summary.status == "pending"
    assert summary.next_attempt_at == now + timedelta(seconds=60)
    assert len(receiver.received) == 3

    # More within the window join the same summary.
    cancel_run(make_runs(1, status="queued")[0].id)
    alert_delivery.deliver_due(now=now + timedelta(seconds=30))
    assert AlertDelivery.objects.filter(kind="summary").count() == 1
    assert AlertDelivery.objects.filter(status="suppressed").count() == 5

    # When the window has room again, the summary goes out, not held back itself.
    alert_delivery.deliver_due(now=now + timedelta(seconds=61))
    summary.refresh_from_db()
    assert summary.status == "sent"
    body = receiver.received[-1].body
    assert (body["kind"], body["count"], len(body["runs"])) == ("summary", 5, 5)
    assert body["text"] == (
        "5 more alerts to channel ops were held back by its rate limit (3 per 60 s); "
        "see the alerts page"
    )
    assert body["url"] == "https://hot.example.com/alerts/"
    assert {r["kind"] for r in body["runs"]} == {"cancelled"}
    assert len(receiver.received) == 4


def test_cancels_by_a_person_a_bulk_operation_and_the_sweeper_raise_alerts(
    db, configure, receiver, make_runs
):
    configure({"name": "ops", "webhook": receiver.url, "on": ["cancelled"]})
    by_hand, by_bulk = make_runs(2, status="queued")
    cancel_run(by_hand.id)
    operation = bulk.start_bulk("cancel", {"q": "n:1"}, ring=False)
    bulk.execute(operation.id)
    forced = make_runs(
        1,
        status="running",
        claimed_by="gone",
        cancel_requested_at=timezone.now() - timedelta(hours=1),
        lease_expires_at=timezone.now() + timedelta(hours=1),
    )[0]
    sweeper.sweep()
    lost = make_runs(1, status="running", claimed_by="gone", recovery_count=99)[0]
    Run.objects.filter(id=lost.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    sweeper.sweep()

    assert Run.objects.get(id=lost.id).error_type == "runtime.sweeper.WorkerLost"
    alerted = set(AlertDelivery.objects.values_list("run_id", "kind"))
    # WorkerLost is a failure, and this channel only wants cancels.
    assert alerted == {
        (by_hand.id, "cancelled"),
        (by_bulk.id, "cancelled"),
        (forced.id, "cancelled"),
    }


def test_the_sweeper_raises_a_worker_lost_failure_and_rings_for_due_alerts(
    db, configure, receiver, make_runs
):
    configure({"name": "ops", "webhook": receiver.url, "on": ["failed"]})
    lost = make_runs(1, status="running", claimed_by="gone", recovery_count=99)[0]
    Run.objects.filter(id=lost.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    sweeper.sweep()
    assert AlertDelivery.objects.get().run_id == lost.id
    # Its doorbell rings on commit; should it be lost, each sweep rings again while it is due.
    assert sweeper.sweep()["alerts_rung"] == 1
    alert_delivery.deliver_due()
    assert receiver.received[0].body["run"]["error_type"] == "runtime.sweeper.WorkerLost"
    assert sweeper.sweep()["alerts_rung"] == 0


def test_alert_rows_roll_back_with_the_change_that_raised_them(db, configure, make_runs):
    configure({"name": "ops", "webhook": "http://127.0.0.1:1/"})
    [run] = make_runs(1, status="queued")
    with pytest.raises(RuntimeError), transaction.atomic():
        cancel_run(run.id)
        assert AlertDelivery.objects.count() == 1
        raise RuntimeError("the caller's transaction fails")
    assert Run.objects.get().status == "queued"
    assert not AlertDelivery.objects.exists()


def test_channels_choose_kinds_and_functions(db, configure, make_runs):
    configure(
        {"name": "all", "webhook": "http://127.0.0.1:1/"},
        {"name": "failures", "webhook": "http://127.0.0.1:1/", "on": "failed"},
        {"name": "others", "email": "x@y.example", "functions": ["hotapp.demo.*"]},
        {"name": "tests", "email": ["t@y.example"], "functions": ["tests.handlers.*"]},
    )
    [run] = make_runs(1, status="queued")
    cancel_run(run.id)
    assert sorted(AlertDelivery.objects.values_list("channel", flat=True)) == ["all", "tests"]


def test_succeeded_runs_cost_no_extra_query_with_alerts_configured(db, configure):
    def queries_of_one_run() -> int:
        send("test:downstream", {})
        run = Run.objects.get(status="queued")
        with CaptureQueriesContext(connection) as captured:
            executor.execute(run.id)
        assert Run.objects.get(id=run.id).status == "succeeded"
        return len(captured)

    without = queries_of_one_run()
    configure({"name": "ops", "webhook": "http://127.0.0.1:1/"})
    assert queries_of_one_run() == without
    assert not AlertDelivery.objects.exists()


def test_an_alert_mail_goes_through_djangos_mail(db, configure, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    configure({"name": "oncall", "email": ["a@example.com", "b@example.com"]})
    last = fail_a_chain()
    alert_delivery.deliver_due()

    [message] = mail.outbox
    assert message.to == ["a@example.com", "b@example.com"]
    assert message.subject == "[Hot] failed: tests.handlers.always_fails (attempt 3)"
    assert "Boom: attempt 3 failed" in message.body
    assert f"Open:      https://hot.example.com/runs/{last.id}/" in message.body
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.response_status) == ("sent", None)


def test_an_alert_mail_reaches_a_real_smtp_server(db, configure, settings):
    smtp = SmtpReceiver()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
        settings.EMAIL_USE_TLS = False
        configure(
            {"name": "oncall", "email": ["oncall@example.com"]},
            ALERT_FROM_EMAIL="hot@example.com",
        )
        fail_a_chain()
        alert_delivery.deliver_due()
        [envelope] = smtp.messages
        assert envelope.mail_from == "hot@example.com"
        assert envelope.rcpt_tos == ["oncall@example.com"]
        text = envelope.content.decode()
        assert "Subject: [Hot] failed: tests.handlers.always_fails (attempt 3)" in text
        assert "Boom: attempt 3 failed" in text
        assert AlertDelivery.objects.get().status == "sent"
    finally:
        smtp.close()


def test_a_mail_server_that_is_away_leaves_the_alert_pending(db, configure, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 1
    configure({"name": "oncall", "email": ["oncall@example.com"]})
    fail_a_chain()
    alert_delivery.deliver_due()
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    assert "ConnectionRefusedError" in delivery.last_error


def test_a_test_alert_is_sent_to_one_channel(db, configure, receiver):
    configure({"name": "ops", "webhook": receiver.url, "headers": {"Authorization": "Bearer s"}})
    delivery = alerts.send_test("ops", requested_by="alice")
    alert_delivery.deliver_due()
    [request] = receiver.received
    assert request.headers["Authorization"] == "Bearer s"
    assert request.body["text"] == "Test alert from Hot to channel ops by alice"
    assert request.body["delivery_id"] == str(delivery.id)
    with pytest.raises(LookupError):
        alerts.send_test("nobody")


def test_a_channel_removed_from_the_settings_fails_its_pending_alerts(db, configure, make_runs):
    configure({"name": "old", "webhook": "http://127.0.0.1:1/"})
    cancel_run(make_runs(1, status="queued")[0].id)
    configure({"name": "new", "webhook": "http://127.0.0.1:1/"})
    alert_delivery.deliver_due()
    delivery = AlertDelivery.objects.get()
    assert (delivery.status, delivery.last_error) == (
        "failed",
        "The channel 'old' is no longer configured",
    )


def test_malformed_channels_are_reported_at_start_up_and_left_out(settings):
    settings.HOT = {
        **settings.HOT,
        "ALERT_CHANNELS": [
            {"name": "ok", "webhook": "https://example.com/hook"},
            {"name": "both", "webhook": "https://x.example", "email": ["a@b.example"]},
            {"name": "ok", "email": ["a@b.example"]},
            {"name": "kinds", "webhook": "https://x.example", "on": ["succeeded"]},
            {"webhook": "ftp://x.example"},
            {"name": "typo", "webhok": "https://x.example"},
        ],
    }
    errors = [error.msg for error in check_alert_channels()]
    assert errors == [
        "ALERT_CHANNELS[1]: channel 'both' needs either 'webhook' (a URL) or 'email' (addresses)",
        "ALERT_CHANNELS[2]: the name 'ok' is used twice",
        "ALERT_CHANNELS[3]: channel 'kinds': 'on' takes failed, cancelled",
        "ALERT_CHANNELS[4]: 'name' is a non-empty string of at most 100 characters",
        "ALERT_CHANNELS[5]: unknown keys ['webhok']",
    ]
    assert [channel.name for channel in alerts.channels()] == ["ok"]


def test_the_standalone_project_reads_channels_from_a_json_variable(monkeypatch):
    from hotproject.env import env_json

    value = [{"name": "ops", "webhook": "https://example.com/hook"}]
    monkeypatch.setenv("HOT_ALERT_CHANNELS", json.dumps(value))
    assert env_json("HOT_ALERT_CHANNELS", []) == value
    monkeypatch.setenv("HOT_ALERT_CHANNELS", "[{")
    with pytest.raises(ValueError, match="HOT_ALERT_CHANNELS must be JSON"):
        env_json("HOT_ALERT_CHANNELS", [])


def test_a_run_failing_in_a_real_celery_worker_posts_its_alert(worker_process, receiver):
    channels = [{"name": "ops", "webhook": receiver.url}]
    worker_process(HOT_ALERT_CHANNELS=json.dumps(channels), HOT_ALERT_BASE_URL="http://hot.test")
    send("test:always-fails", {"order": 11})

    wait_for(lambda: receiver.received, timeout=60, what="the worker to post the alert")
    [request] = receiver.received
    last = Run.objects.get(status="failed", is_superseded=False)
    assert last.attempt == 3
    assert request.body["run"]["id"] == str(last.id)
    assert request.body["run"]["url"] == f"http://hot.test/runs/{last.id}/"
    delivery = wait_for(
        lambda: AlertDelivery.objects.filter(status="sent").first(), what="the delivery log"
    )
    assert (delivery.run_id, delivery.attempts, delivery.response_status) == (last.id, 1, 200)


def test_hot_dev_delivers_an_alert_on_sqlite(tmp_path, receiver):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="hotproject.settings",
        HOT_DATA_DIR=str(tmp_path),
        HOT_HANDLER_MODULES="tests.handlers",
        HOT_ALERT_CHANNELS=json.dumps([{"name": "ops", "webhook": receiver.url}]),
    )
    port = free_port()
    log = tmp_path / "hot-dev.log"
    out = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "hot", "dev", "--port", str(port), "--no-demo"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: f":{port}/" in log.read_text(), timeout=60, what="hot dev to start")
        # From another process, as a user's script would: the sweeper of hot dev finds the run.
        subprocess.run(
            [sys.executable, "manage.py", "hot", "send", "test:always-fails", '{"n": 1}'],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        wait_for(lambda: receiver.received, timeout=120, what="hot dev to post the alert")
        body = receiver.received[0].body
        assert (body["kind"], body["run"]["attempt"]) == ("failed", 3)
        with sqlite3.connect(tmp_path / "hot.sqlite3") as conn:
            rows = conn.execute("SELECT channel, kind, status FROM hotapp_alertdelivery")
            assert rows.fetchall() == [("ops", "failed", "sent")]
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        out.close()


def test_the_standalone_project_reads_every_alert_setting_from_the_environment(monkeypatch):
    from tests.test_settings import settings_with

    loaded = settings_with(
        monkeypatch,
        HOT_ALERT_CHANNELS='[{"name": "ops", "webhook": "https://example.com/h"}]',
        HOT_ALERT_BASE_URL="https://hot.example.com",
        HOT_ALERT_RATE_LIMIT="3",
        HOT_ALERT_RATE_WINDOW_SECONDS="120",
        HOT_ALERT_TIMEOUT_SECONDS="2.5",
        HOT_ALERT_MAX_ATTEMPTS="7",
        HOT_ALERT_RETRY_DELAY_SECONDS="1",
        HOT_ALERT_QUEUE="hot.alerts",
        HOT_ALERT_FROM_EMAIL="hot@example.com",
        EMAIL_HOST="smtp.example.com",
        EMAIL_PORT="587",
    )
    hot = loaded["HOT"]
    assert hot["ALERT_CHANNELS"] == [{"name": "ops", "webhook": "https://example.com/h"}]
    assert (hot["ALERT_BASE_URL"], hot["ALERT_RATE_LIMIT"]) == ("https://hot.example.com", 3)
    assert (hot["ALERT_RATE_WINDOW_SECONDS"], hot["ALERT_TIMEOUT_SECONDS"]) == (120.0, 2.5)
    assert (hot["ALERT_MAX_ATTEMPTS"], hot["ALERT_RETRY_DELAY_SECONDS"]) == (7, 1.0)
    assert (hot["ALERT_QUEUE"], hot["ALERT_FROM_EMAIL"]) == ("hot.alerts", "hot@example.com")
    assert (loaded["EMAIL_HOST"], loaded["EMAIL_PORT"]) == ("smtp.example.com", 587)


def test_a_burst_beyond_one_take_is_held_back_in_one_pass(db, configure, receiver, make_runs):
    configure({"name": "ops", "webhook": receiver.url, "rate_limit": 1})
    for run in make_runs(45, status="queued"):
        cancel_run(run.id)
    assert alert_delivery.deliver_due() == 1
    assert AlertDelivery.objects.filter(status="suppressed").count() == 44
    assert AlertDelivery.objects.get(kind="summary").payload["count"] == 44


def test_a_run_page_lists_the_alerts_its_attempt_raised(db, configure, receiver, alice_client):
    configure({"name": "ops", "webhook": receiver.url})
    last = fail_a_chain()
    alert_delivery.deliver_due()

    page = alice_client.get(f"/runs/{last.id}/").content.decode()
    assert "<h2>Alerts</h2>" in page
    assert 'failed alert to <a href="/alerts/?channel=ops">ops</a>' in page
    assert "HTTP 200" in page
    first = Run.objects.get(function="tests.handlers.always_fails", attempt=1)
    assert "<h2>Alerts</h2>" not in alice_client.get(f"/runs/{first.id}/").content.decode()
