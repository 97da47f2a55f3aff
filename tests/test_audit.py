"""Every action on a run, task or schedule records who did it, when and through what, in the
action's own transaction; the run, task and schedules pages show it."""

import re
from io import StringIO

import pytest
from django.core.management import call_command

from hotapp.models import ApiToken, AuditEntry, Run, Schedule
from runtime import Actor, InvalidTransition, cancel_run, rerun, retry_run, schedules, send, start
from tests import task_handlers
from tests.conftest import drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed():
    send("test:always-fails", {"k": 1})
    drain()
    return Run.objects.order_by("-attempt").first()


def text(response) -> str:
    """The page's words, without markup, on one line."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


def said(entry: AuditEntry, verb: str, via: str) -> str:
    by = f" by {entry.username}" if entry.username else ""
    return f"{verb}{by} at {entry.created_at:%Y-%m-%d %H:%M:%S} UTC via {via}"


def test_a_retry_from_the_page_is_shown_on_both_attempts_pages(alice_client, alice, failed):
    alice_client.post(f"/runs/{failed.id}/retry/")

    entry = AuditEntry.objects.get()
    attempt = Run.objects.get(attempt=failed.attempt + 1)
    assert (entry.action, entry.user, entry.username, entry.via) == (
        "retry",
        alice,
        "alice",
        "page",
    )
    assert (entry.run_id, entry.result_run_id) == (failed.id, attempt.id)
    old_page = text(alice_client.get(f"/runs/{failed.id}/"))
    assert said(entry, "Retried", "dashboard") + f" → attempt {attempt.attempt}" in old_page
    new_page = text(alice_client.get(f"/runs/{attempt.id}/"))
    assert said(entry, "Retried", "dashboard") + f" · of attempt {failed.attempt}" in new_page


def test_api_actions_are_recorded_and_listed_in_the_run_json(client, alice, failed):
    # Through a token: the user is the token's, though no session says so.
    _, secret = ApiToken.issue(alice, "script")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}

    client.post(f"/api/runs/{failed.id}/rerun/", **auth)
    data = client.get(f"/api/runs/{failed.id}/", **auth).json()

    fresh = Run.objects.get(rerun_of=failed)
    [action] = data["actions"]
    assert action["action"] == "rerun" and action["by"] == "alice" and action["via"] == "api"
    assert action["run_id"] == str(failed.id) and action["result_run_id"] == str(fresh.id)
    client.force_login(alice)
    assert said(AuditEntry.objects.get(), "Rerun", "API") in text(client.get(f"/runs/{failed.id}/"))


def test_the_run_page_shows_who_cancelled_it(alice_client):
    send("test:downstream")
    run = Run.objects.get()

    alice_client.post(f"/api/runs/{run.id}/cancel/")

    entry = AuditEntry.objects.get(run=run)
    assert said(entry, "Cancelled", "API") in text(alice_client.get(f"/runs/{run.id}/"))


def test_an_action_that_fails_records_nothing(failed):
    Run.objects.filter(id=failed.id).update(status="succeeded")

    with pytest.raises(InvalidTransition):
        retry_run(failed.id, Actor(via="api"))
    with pytest.raises(InvalidTransition):
        cancel_run(failed.id)

    assert not AuditEntry.objects.exists()


def test_the_runtime_api_still_works_without_an_actor_and_says_a_program_did_it(failed):
    attempt = retry_run(failed.id)
    fresh = rerun(failed.id)

    entries = list(AuditEntry.objects.order_by("id").values_list("action", "via", "username"))
    assert entries == [("retry", "code", ""), ("rerun", "code", "")]
    assert attempt.attempt == failed.attempt + 1 and fresh.rerun_of_id == failed.id


def test_a_deleted_user_keeps_their_name_in_the_history(alice_client, alice, failed):
    alice_client.post(f"/runs/{failed.id}/rerun/")
    alice.delete()

    entry = AuditEntry.objects.get()
    assert entry.user is None and entry.username == "alice"


def test_task_actions_are_recorded_and_shown_on_the_task_page(alice_client):
    handle = start(task_handlers.waits_for_mail)

    alice_client.post(f"/tasks/{handle.id}/send/", {"message": '{"hello": 1}'})
    alice_client.post(f"/tasks/{handle.id}/close/")
    alice_client.post(f"/tasks/{handle.id}/cancel/")

    entries = AuditEntry.objects.filter(task_id=handle.id).order_by("id")
    assert [e.action for e in entries] == ["task_send", "task_close", "task_cancel"]
    page = text(alice_client.get(f"/tasks/{handle.id}/"))
    for entry, verb in zip(entries, ("Message sent", "Inbox closed", "Cancelled"), strict=True):
        assert said(entry, verb, "dashboard") in page
    # A task's cancel is one entry, about the task, not one more per attempt it stopped.
    assert not AuditEntry.objects.filter(run__task_id=handle.id).exists()


def test_messages_a_program_sends_its_task_are_not_recorded():
    handle = start(task_handlers.waits_for_mail)

    handle.send({"n": 1})
    handle.close()

    assert not AuditEntry.objects.exists()


def test_pausing_and_resuming_a_schedule_is_recorded_from_the_page_and_the_cli(alice_client):
    schedules.sync()
    schedule = Schedule.objects.get(name="tests.task_handlers.every_ten_seconds")

    alice_client.post(f"/schedules/{schedule.id}/pause/")
    call_command("hot", "resume", schedule.name, stdout=StringIO())

    paused, resumed = AuditEntry.objects.filter(schedule=schedule).order_by("id")
    assert (paused.action, paused.via, paused.username) == ("schedule_pause", "page", "alice")
    assert (resumed.action, resumed.via, resumed.user) == ("schedule_resume", "cli", None)
    # The schedules page shows the last change.
    assert "Last change " + said(resumed, "Resumed", "CLI") in text(alice_client.get("/schedules/"))
