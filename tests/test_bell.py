"""The coalescing doorbell (runtime.bell) and the workers' doorbells that go through it."""

import subprocess
import sys
import threading
import time

import pytest

from hotapp.models import Run, RunStatus
from runtime import dispatch, send
from runtime.bell import Bell
from tests.conftest import ROOT, subprocess_database_url, wait_for


class Recorder:
    """A publish function that records each batch and can be held up mid-publish."""

    def __init__(self) -> None:
        self.batches: list[list] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def __call__(self, items: list) -> None:
        self.entered.set()
        self.release.wait(5)
        self.batches.append(items)


def test_the_first_ring_after_a_quiet_spell_is_published_at_once():
    published = Recorder()
    bell = Bell("test-bell", published, interval=60)

    bell.ring([1])

    wait_for(lambda: published.batches == [[1]], timeout=5, what="the first ring")


def test_rings_during_a_publish_collapse_into_one_later_batch():
    published = Recorder()
    bell = Bell("test-bell", published, interval=0)
    published.release.clear()
    bell.ring([1])
    published.entered.wait(5)  # the first batch is being published, and held there

    for n in (2, 3, 4):
        bell.ring([n])
    published.release.set()

    wait_for(lambda: len(published.batches) == 2, timeout=5, what="the second batch")
    assert published.batches == [[1], [2, 3, 4]]


def test_flush_publishes_what_is_pending_in_the_calling_thread():
    published = Recorder()
    bell = Bell("test-bell", published, interval=60)
    bell.ring([1])
    wait_for(lambda: published.batches, timeout=5, what="the first ring")
    bell.ring([2])  # waits out the 60 s interval in the bell's thread

    bell.flush()

    assert published.batches == [[1], [2]]
    bell.flush()  # nothing pending: nothing published
    assert published.batches == [[1], [2]]


def test_a_failing_publish_is_logged_and_the_bell_keeps_ringing(caplog):
    batches = []

    def publish(items):
        batches.append(items)
        if len(batches) == 1:
            raise ConnectionError("broker away")

    bell = Bell("test-bell", publish, interval=0)
    bell.ring(["lost"])
    wait_for(lambda: batches, timeout=5, what="the failing publish")
    time.sleep(0.05)
    bell.ring(["next"])

    wait_for(lambda: len(batches) == 2, timeout=5, what="the next publish")
    assert batches == [["lost"], ["next"]]
    assert "test-bell: could not publish" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_sends_rung_while_a_doorbell_waits_share_it(redis_client, settings, monkeypatch):
    # A bell that waits a minute after each message: every send after the first waits for the
    # flush, as sends arriving within DOORBELL_INTERVAL of a doorbell do.
    monkeypatch.setattr(dispatch, "_doorbell", Bell("test-doorbell", dispatch._publish, 60))
    for n in range(50):
        send("order:created", {"order_id": n, "items": []})
    dispatch.flush()

    # One doorbell per CLAIM_BATCH (20) of the runs each message rang for: 3, or 4 if the
    # first message went out before all of the first 20 sends.
    assert redis_client.llen("celery") in (3, 4)
    assert Run.objects.filter(status=RunStatus.QUEUED).count() == 50


@pytest.mark.django_db(transaction=True)
def test_a_process_that_sends_and_exits_at_once_leaves_its_doorbell(redis_client, settings):
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TEST_DATABASE_URL": subprocess_database_url(),
        "TEST_REDIS_URL": settings.REDIS_URL,
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(
        [sys.executable, "manage.py", "hot", "send", "order:created", '{"order_id": 1}'],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )

    assert redis_client.llen("celery") == 1
