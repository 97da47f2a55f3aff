"""GET /metrics: Prometheus's exposition of runs, parsed back with prometheus_client's parser,
against rows of known statuses and times, on PostgreSQL and on SQLite; and who may read it."""

import json
import uuid
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from hotapp import metrics
from hotapp.models import ApiToken, Run
from tests.conftest import on_sqlite

A, B = "shop.handlers.charge", "shop.handlers.ship"


def run(function: str, status: str, now, *, created=None, started=None, finished=None, **extra):
    """A run row at times given in seconds before `now` (None: not set)."""

    def at(seconds):
        return None if seconds is None else now - timedelta(seconds=seconds)

    stamps = [s for s in (created, started, finished) if s is not None]
    return Run(
        function=function,
        trigger=extra.pop("trigger", "event"),
        stream_id=uuid.uuid4(),
        status=status,
        created_at=at(created),
        started_at=at(started),
        finished_at=at(finished),
        updated_at=extra.pop("updated_at", at(min(stamps))),
        **extra,
    )


def load_rows(now) -> None:
    """Finished in the last hour: A twice succeeded (0.2 s and 3 s runs, after 0.01 s and 0.5 s
    in the queue), A's attempt 2 failed, A pending a retry; B cancelled while queued. Active:
    3 queued event runs (oldest 120 s), 1 queued task attempt (60 s), 2 running. Outside the
    window: a run that finished 2 hours ago and was stamped again now (superseded)."""
    Run.objects.bulk_create(
        [
            run(A, "succeeded", now, created=600.21, started=600.2, finished=600),
            run(A, "succeeded", now, created=503.5, started=503, finished=500),
            run(A, "failed", now, created=401, started=400.5, finished=400, attempt=2),
            run(A, "pending_retry", now, created=301, started=300.5, finished=300),
            run(B, "cancelled", now, created=201, finished=200),
            run(B, "queued", now, created=120),
            run(B, "queued", now, created=30),
            run(A, "queued", now, created=10),
            run(A, "queued", now, created=60, trigger="task"),
            run(A, "running", now, created=20, started=15),
            run(B, "running", now, created=20, started=15),
            run(A, "failed", now, created=7202, started=7201, finished=7200, updated_at=now),
        ]
    )


def scrape(client, **headers) -> dict:
    """{sample name: {labels as a sorted tuple: value}} of one GET."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    samples: dict = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def expect_known_rows(samples: dict) -> None:
    """What load_rows() must expose (shared by the PostgreSQL and SQLite tests)."""
    finished = "hot_runs_finished_total"
    assert value(samples, finished, function=A, status="succeeded") == 2
    assert value(samples, finished, function=A, status="failed") == 1  # not the 2-hour-old one
    assert value(samples, finished, function=A, status="pending_retry") == 1
    assert value(samples, finished, function=B, status="cancelled") == 1
    retried = "hot_retry_attempts_finished_total"
    assert value(samples, retried, function=A, status="failed") == 1
    assert sum(samples[retried].values()) == 1

    active = "hot_runs_active"
    assert value(samples, active, function=A, status="queued") == 2
    assert value(samples, active, function=B, status="queued") == 2
    assert value(samples, active, function=A, status="running") == 1
    assert value(samples, active, function=A, status="pending_retry") == 1
    assert value(samples, "hot_retries_pending", function=A) == 1
    assert value(samples, "hot_queue_depth", queue="event") == 3
    assert value(samples, "hot_queue_depth", queue="task") == 1
    assert 120 <= value(samples, "hot_queue_oldest_age_seconds", queue="event") < 180
    assert 60 <= value(samples, "hot_queue_oldest_age_seconds", queue="task") < 120

    # A's three started attempts ran 0.2 s, 3 s, 0.5 s (and one 0.5 s pending retry): 4.
    duration = "hot_run_duration_seconds"
    assert value(samples, duration + "_count", function=A) == 4
    assert value(samples, duration + "_sum", function=A) == pytest.approx(4.2)
    assert value(samples, duration + "_bucket", function=A, le="0.25") == 1
    assert value(samples, duration + "_bucket", function=A, le="0.5") == 3
    assert value(samples, duration + "_bucket", function=A, le="5.0") == 4
    assert value(samples, duration + "_bucket", function=A, le="+Inf") == 4
    wait = "hot_run_queue_wait_seconds"
    assert value(samples, wait + "_sum", function=A) == pytest.approx(0.01 + 0.5 + 0.5 + 0.5)
    assert value(samples, wait + "_bucket", function=A, le="0.01") == 1
    # B's only finished run never started: no duration, no wait.
    assert value(samples, duration + "_count", function=B) == 0


@pytest.fixture
def fresh_collector():
    """The process's collector as at start-up, its first window opened an hour ago."""
    metrics.collector.__init__()
    metrics.collector.since = timezone.now() - timedelta(hours=1)
    yield metrics.collector
    metrics.collector.__init__()


@pytest.mark.django_db
def test_metrics_expose_runs_by_function_and_status_queues_retries_and_latencies(
    bob_client, fresh_collector
):
    load_rows(timezone.now())
    expect_known_rows(scrape(bob_client))


@pytest.mark.django_db
def test_a_finished_run_is_counted_once_when_its_window_settles(bob_client, fresh_collector):
    now = timezone.now()
    Run.objects.bulk_create([run(A, "succeeded", now, created=2, started=1.5, finished=1)])
    finished = "hot_runs_finished_total"
    with override_settings(HOT={"METRICS_SETTLE_SECONDS": 60}):
        # Finished a second ago: its outcome may not have committed everywhere yet.
        assert value(scrape(bob_client), finished, function=A, status="succeeded") == 0
    with override_settings(HOT={"METRICS_SETTLE_SECONDS": 0}):
        assert value(scrape(bob_client), finished, function=A, status="succeeded") == 1
        # Stamped again later (as a superseded attempt is): still counted once.
        Run.objects.update(updated_at=timezone.now())
        assert value(scrape(bob_client), finished, function=A, status="succeeded") == 1


@pytest.mark.django_db
def test_an_empty_database_exposes_empty_queues(bob_client, fresh_collector):
    samples = scrape(bob_client)
    assert value(samples, "hot_queue_depth", queue="event") == 0
    assert value(samples, "hot_queue_oldest_age_seconds", queue="task") == 0


@pytest.mark.django_db
def test_held_runs_are_counted_by_reason_and_not_in_the_queue_depth(bob_client, fresh_collector):
    now = timezone.now()
    later = now + timedelta(hours=1)
    Run.objects.bulk_create(
        [
            run(A, "queued", now, created=5),
            run(A, "queued", now, created=600, available_at=later, wait_reason="delay"),
            run(A, "queued", now, created=500, available_at=later, wait_reason="delay"),
        ]
    )
    samples = scrape(bob_client)
    assert value(samples, "hot_queue_depth", queue="event") == 1
    assert value(samples, "hot_queue_oldest_age_seconds", queue="event") < 600
    assert value(samples, "hot_runs_held", function=A, reason="delay") == 2
    assert value(samples, "hot_runs_active", function=A, status="queued") == 3


@pytest.mark.django_db
def test_metrics_answer_openmetrics_when_the_scraper_asks(bob_client):
    response = bob_client.get("/metrics", HTTP_ACCEPT="application/openmetrics-text")
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


# Who may read it


@pytest.mark.django_db
def test_it_returns_401_for_anonymous_requests(client):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.django_db
def test_it_returns_403_to_a_user_without_view_run(dave_client):
    response = dave_client.get("/metrics")
    assert response.status_code == 403
    assert "hotapp.view_run" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_an_api_token_of_a_viewer_reads_the_metrics(client, bob):
    secret = ApiToken.issue(bob, "prometheus")[1]
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200


@pytest.mark.django_db
def test_an_api_token_of_a_user_without_view_run_is_refused(client, dave):
    secret = ApiToken.issue(dave, "prometheus")[1]
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 403


@pytest.mark.django_db
@override_settings(HOT={"METRICS_TOKEN": "scrape-secret-123"})
def test_the_configured_metrics_token_reads_the_metrics_without_a_user(client):
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-123").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-12").status_code == 401
    assert client.post("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-123").status_code == 405


@pytest.mark.django_db
def test_no_bearer_secret_opens_the_metrics_when_no_metrics_token_is_set(client):
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer None").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


# SQLite, the embedded default

SQLITE_SCRIPT = """
import django, json
django.setup()
from datetime import timedelta
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from hotapp import metrics
from tests.test_metrics import load_rows, scrape
call_command("migrate", verbosity=0)
load_rows(timezone.now())
metrics.collector.since = timezone.now() - timedelta(hours=1)
client = Client(raise_request_exception=False)
client.force_login(User.objects.create_superuser("alice"))
samples = scrape(client)
print(json.dumps({name: [[list(k), v] for k, v in s.items()] for name, s in samples.items()}))
"""


def test_metrics_expose_the_same_known_rows_on_sqlite(tmp_path):
    done = on_sqlite(["-c", SQLITE_SCRIPT], tmp_path, timeout=60, ALLOWED_HOSTS="testserver")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "hot.sqlite3").exists()  # it did run on SQLite
    raw = json.loads(done.stdout.splitlines()[-1])
    samples = {
        name: {tuple(tuple(pair) for pair in key): v for key, v in pairs}
        for name, pairs in raw.items()
    }
    expect_known_rows(samples)
