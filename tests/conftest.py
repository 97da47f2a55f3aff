"""Fixtures: real PostgreSQL, real Redis, real Celery workers (in a thread or a process)."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connection
from django.utils import timezone

from hotapp.models import Run, RunStatus
from runtime import dispatch, executor, flow_claim, retry_attempts
from runtime.celery_app import app as celery_app

ROOT = Path(__file__).resolve().parent.parent


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session):
    missing = [
        name
        for name, url, port in (
            ("PostgreSQL", os.environ["DATABASE_URL"], 5432),
            ("Redis", os.environ["REDIS_URL"], 6379),
        )
        if not _reachable(url, port)
    ]
    if missing:
        pytest.exit(
            f"{' and '.join(missing)} not reachable. The suite runs against real services: "
            "start them (`.ci/run` does) or point TEST_DATABASE_URL / TEST_REDIS_URL at them.",
            returncode=3,
        )


def subprocess_database_url() -> str:
    """The URL of pytest-django's test database, for processes the tests start."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    dispatch.flush()  # another test's doorbells are out before they are thrown away
    client.flushdb()  # no doorbells left over from another test
    yield client
    client.close()


@pytest.fixture(scope="session", autouse=True)
def _drop_stray_connections(django_db_setup, django_db_blocker):
    """Worker threads and processes hold connections to the test database; end them before
    pytest-django drops it."""
    yield
    if not connection.settings_dict["NAME"].startswith("test_"):
        return  # no test used the database, so none was created (never touch the real one)
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def thread_worker():
    """A real Celery worker consuming from Redis in a thread of this process."""
    return start_worker(
        celery_app,
        queues=["celery", settings.HOT["TASK_QUEUE"]],
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=30,
    )


@pytest.fixture
def receiver():
    """A real HTTP server on this machine that records the webhook posts it gets."""
    from tests.alert_receivers import WebhookReceiver

    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def celery_worker(transactional_db, redis_client):
    with thread_worker() as worker:
        yield worker


@pytest.fixture
def worker_process(
    transactional_db, redis_client, tmp_path
) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `celery -A hotproject worker` as a separate process against the test database."""
    started: list[subprocess.Popen] = []
    logs = []

    def start(**env_overrides: str) -> subprocess.Popen:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "TEST_DATABASE_URL": subprocess_database_url(),
            "TEST_REDIS_URL": settings.REDIS_URL,
            **env_overrides,
        }
        logs.append((tmp_path / f"worker{len(started)}.log").open("w"))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "hotproject",
                "worker",
                "--pool=solo",
                f"--queues=celery,{settings.HOT['TASK_QUEUE']}",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=INFO",
                f"--hostname=proc-{len(started)}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=logs[-1],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    for log in logs:
        log.close()


def on_sqlite(
    args: list[str], data_dir: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess:
    """Run `python ARGS` from the checkout on the embedded default, as `hot dev` would: the
    standalone project's settings, SQLite in `data_dir`, no PostgreSQL or Redis."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "HOT_HANDLER_MODULES")
    }
    clean.update(DJANGO_SETTINGS_MODULE="hotproject.settings", HOT_DATA_DIR=str(data_dir), **env)
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(condition: Callable[[], object], timeout: float = 30, what: str = "condition"):
    """Poll until `condition()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def all_terminal() -> bool:
    return not Run.objects.exclude(
        status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED]
    ).exists()


def drain(max_rounds: int = 50) -> None:
    """Execute every queued run in this thread and promote every pending retry at once,
    until nothing is left: the engine's semantics without a broker or a clock."""
    for _ in range(max_rounds):
        # Held runs (delayed events) wait for runtime.holds to release them.
        queued = list(
            Run.objects.filter(status=RunStatus.QUEUED, available_at=None).values_list(
                "id", flat=True
            )
        )
        pending = list(
            Run.objects.filter(status=RunStatus.PENDING_RETRY).values_list("id", flat=True)
        )
        if not queued and not pending:
            return
        for run_id in queued:
            executor.execute(run_id)
        # Flow-controlled runs are claimed within their limits, never by id.
        while flow_runs := flow_claim.claim_flow("conftest.drain", 20):
            executor._run_batch(flow_runs, "conftest.drain")
        # Due now, whatever the policy's delay.
        Run.objects.filter(id__in=pending).update(next_retry_at=timezone.now())
        for run_id in pending:
            retry_attempts.promote(run_id)
    raise AssertionError("runs still queued after draining")


# Personas: alice looks and operates (retry/rerun/cancel), bob only looks, dave is logged in but
# may not look, charlie is not logged in (the plain `client`).


def user_with(django_user_model, name: str, *codenames: str):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(name, password=f"{name}-pass")
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def alice(django_user_model):
    return user_with(django_user_model, "alice", "view_run", "operate_run")


@pytest.fixture
def bob(django_user_model):
    return user_with(django_user_model, "bob", "view_run")


@pytest.fixture
def dave(django_user_model):
    return user_with(django_user_model, "dave")


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(client, bob):
    client.force_login(bob)
    return client


@pytest.fixture
def dave_client(client, dave):
    client.force_login(dave)
    return client


@pytest.fixture
def make_runs():
    """Insert `n` runs of tests.handlers.downstream, each with its own event, as they stand
    after running (failed unless told otherwise), one millisecond apart, oldest first."""
    from datetime import timedelta

    from hotapp.models import TERMINAL_STATUSES, Event

    def make(n: int, status: str = RunStatus.FAILED, **fields) -> list[Run]:
        now = timezone.now()
        events, runs = [], []
        for i in range(n):
            created_at = now - timedelta(milliseconds=n - i)
            event = Event(type="test:downstream", data={"n": i}, created_at=created_at)
            event.stream_id = event.id
            event.is_handled = True
            events.append(event)
            runs.append(
                Run(
                    function="tests.handlers.downstream",
                    trigger="event",
                    event=event,
                    event_type=event.type,
                    stream_id=event.stream_id,
                    input=event.data,
                    status=status,
                    created_at=created_at,
                    updated_at=now,
                    finished_at=now if status in TERMINAL_STATUSES else None,
                    **fields,
                )
            )
        Event.objects.bulk_create(events)
        return Run.objects.bulk_create(runs)

    return make
