"""The run actions at their edges: a task's attempts, and a cancel racing a state change."""

import pytest

from hotapp.models import Run, RunStatus, TaskStatus
from runtime import InvalidTransition, actions, cancel_run, rerun, retry_run, send, start
from tests import task_handlers
from tests.conftest import drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_task():
    handle = start(task_handlers.always_fails)
    drain()
    assert handle.status == TaskStatus.FAILED
    return handle


def latest_attempt(handle) -> Run:
    return Run.objects.filter(task_id=handle.id).order_by("-attempt").first()


@pytest.mark.parametrize("action", [retry_run, rerun])
def test_a_failed_task_attempt_is_not_retried_or_rerun_on_its_own(failed_task, action):
    with pytest.raises(InvalidTransition, match="Start the task again"):
        action(latest_attempt(failed_task).id)

    assert Run.objects.filter(task_id=failed_task.id).count() == 2
    assert failed_task.status == TaskStatus.FAILED


def test_the_api_refuses_to_retry_a_task_attempt_saying_why(alice_client, failed_task):
    response = alice_client.post(f"/api/runs/{latest_attempt(failed_task).id}/retry/")

    assert response.status_code == 409
    assert "Start the task again" in response.json()["error"]["message"]
    assert Run.objects.filter(task_id=failed_task.id).count() == 2


def test_a_task_attempt_page_links_to_its_task_and_offers_no_retry(alice_client, failed_task):
    page = alice_client.get(f"/runs/{latest_attempt(failed_task).id}/").content.decode()

    assert f'href="/tasks/{failed_task.id}/"' in page
    assert "start the task again" in page
    assert "Retry</button>" not in page and "Rerun</button>" not in page


def test_a_failed_event_run_still_offers_retry_and_rerun(alice_client):
    send("test:always-fails")
    drain()
    page = alice_client.get(f"/runs/{Run.objects.order_by('-attempt').first().id}/").content

    assert b"Retry</button>" in page and b"Rerun</button>" in page


def test_a_run_requeued_between_the_cancels_two_updates_is_still_cancelled(monkeypatch):
    send("test:downstream")
    run = Run.objects.get()
    Run.objects.filter(id=run.id).update(status=RunStatus.RUNNING)
    real = actions.transition
    seen = []

    def requeued_after_the_first_update(runs, **fields):
        changed = real(runs, **fields)
        if not seen:  # the run was running; lease recovery now puts it back in the queue
            Run.objects.filter(id=run.id).update(status=RunStatus.QUEUED)
        seen.append(changed)
        return changed

    monkeypatch.setattr(actions, "transition", requeued_after_the_first_update)

    assert cancel_run(run.id) == RunStatus.CANCELLED
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
