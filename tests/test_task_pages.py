"""The tasks and schedules pages and their actions."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from hotapp.filters import encode_cursor, row_key
from hotapp.ids import uuid7
from hotapp.models import Schedule, Task, TaskCheckpoint, TaskMessage, TaskStatus
from runtime import schedules, start
from tests import task_handlers, test_run_page
from tests.conftest import drain
from tests.test_run_page import post_from_page

pytestmark = pytest.mark.django_db
csrf_client = test_run_page.csrf_client  # the fixture: a client that enforces CSRF


@pytest.fixture
def echo_task():
    handle = start(task_handlers.echo)
    handle.send("hello")
    handle.close()
    drain()
    return handle


def test_the_tasks_page_lists_tasks_with_status_attempts_and_checkpoints(alice_client, echo_task):
    page = alice_client.get("/tasks/").content.decode()

    assert f'id="task-{echo_task.id}"' in page
    assert "task-completed" in page and ">echo<" in page


def test_the_tasks_page_filters_by_status(alice_client, echo_task):
    start(task_handlers.waits_for_mail)

    queued = alice_client.get("/tasks/?status=queued").content.decode()
    assert "waits_for_mail" in queued and ">echo<" not in queued


def test_a_task_page_shows_input_result_attempts_checkpoints_and_messages(alice_client, echo_task):
    page = alice_client.get(f"/tasks/{echo_task.id}/").content.decode()

    assert "&quot;count&quot;: 1" in page  # the result and the checkpoint
    assert "Attempt 1" in page
    assert "→ in" in page and "← out" in page
    assert "&quot;echo&quot;: &quot;hello&quot;" in page
    assert "received" in page


def test_an_operator_can_send_a_message_close_the_inbox_and_cancel(alice_client):
    handle = start(task_handlers.waits_for_mail)

    response = alice_client.post(
        f"/tasks/{handle.id}/send/", {"message": '{"go": true}'}, HTTP_HX_REQUEST="true"
    )
    assert response.content.lstrip().startswith(b'<div id="task-live"')
    assert handle.messages("in") == [{"go": True}]

    bad = alice_client.post(f"/tasks/{handle.id}/send/", {"message": "{not json"}, follow=True)
    assert "not valid JSON" in bad.content.decode()

    alice_client.post(f"/tasks/{handle.id}/close/")
    assert Task.objects.get(id=handle.id).is_inbox_closed

    alice_client.post(f"/tasks/{handle.id}/cancel/")
    assert handle.status == TaskStatus.CANCELLED


def test_viewers_cannot_act_on_tasks_or_schedules(bob_client):
    handle = start(task_handlers.waits_for_mail)
    schedules.sync()
    schedule = Schedule.objects.first()

    assert bob_client.post(f"/tasks/{handle.id}/cancel/").status_code == 403
    assert bob_client.post(f"/schedules/{schedule.id}/pause/").status_code == 403
    assert handle.status == TaskStatus.QUEUED


def test_the_schedules_page_shows_expressions_in_words_and_next_fire_times(alice_client):
    page = alice_client.get("/schedules/").content.decode()

    assert "every_ten_seconds" in page and "every 10 seconds" in page
    assert "*/5 * * * *" in page and "every 5 minutes" in page
    assert page.count("Pause</button>") >= 4


def test_a_schedule_can_be_paused_and_resumed_from_its_page(alice_client):
    schedules.sync()
    schedule = Schedule.objects.get(name="tests.task_handlers.every_ten_seconds")

    alice_client.post(f"/schedules/{schedule.id}/pause/")
    schedule.refresh_from_db()
    assert schedule.is_paused
    assert "Resume</button>" in alice_client.get("/schedules/").content.decode()

    alice_client.post(f"/schedules/{schedule.id}/resume/")
    schedule.refresh_from_db()
    assert not schedule.is_paused


def test_anonymous_visitors_are_sent_to_log_in(client, echo_task):
    for url in ("/tasks/", f"/tasks/{echo_task.id}/", "/schedules/"):
        assert client.get(url).url.startswith("/login/")


def test_task_and_schedule_actions_need_the_csrf_token(csrf_client):
    handle = start(task_handlers.waits_for_mail)
    schedules.sync()
    schedule = Schedule.objects.get(name="tests.task_handlers.every_ten_seconds")

    for action in ("send", "close", "cancel"):
        assert csrf_client.post(f"/tasks/{handle.id}/{action}/").status_code == 403
    assert csrf_client.post(f"/schedules/{schedule.id}/pause/").status_code == 403
    task = Task.objects.get(id=handle.id)
    assert task.status == TaskStatus.QUEUED and not task.is_inbox_closed
    assert not handle.messages() and not Schedule.objects.get(id=schedule.id).is_paused

    post_from_page(csrf_client, f"/tasks/{handle.id}/", f"/tasks/{handle.id}/cancel/")
    post_from_page(csrf_client, "/schedules/", f"/schedules/{schedule.id}/pause/")
    assert handle.status == TaskStatus.CANCELLED
    assert Schedule.objects.get(id=schedule.id).is_paused


def test_a_task_page_shows_its_newest_messages_in_order_and_counts_the_older_ones(alice_client):
    handle = start(task_handlers.waits_for_mail)
    TaskMessage.objects.bulk_create(
        TaskMessage(task_id=handle.id, direction="out", body={"n": n}) for n in range(505)
    )

    page = alice_client.get(f"/tasks/{handle.id}/").content.decode()

    shown = [int(n) for n in re.findall(r"\{&quot;n&quot;: (\d+)\}", page)]
    assert shown == list(range(5, 505))
    assert "(505, newest 500 shown)" in page and "5 older messages not shown" in page


def test_a_task_page_shows_its_newest_checkpoints_and_counts_the_older_ones(alice_client):
    handle = start(task_handlers.waits_for_mail)
    TaskCheckpoint.objects.bulk_create(
        TaskCheckpoint(task_id=handle.id, state={"step": n}) for n in range(103)
    )

    page = alice_client.get(f"/tasks/{handle.id}/").content.decode()

    shown = [int(n) for n in re.findall(r"<code class=\"muted\">\{&quot;step&quot;: (\d+)\}", page)]
    assert shown == list(range(102, 2, -1))  # newest first
    assert "(103, newest 100 shown)" in page and "3 older checkpoints not shown" in page


def test_an_unknown_status_filter_on_the_tasks_page_says_so(alice_client, echo_task):
    page = alice_client.get("/tasks/?status=finished").content.decode()

    assert "&#x27;finished&#x27; is not a task status" in page
    assert 'id="task-' not in page  # no rows rather than an unfiltered list


def test_the_first_page_of_tasks_is_live_and_its_region_can_be_fetched_alone(
    alice_client, echo_task
):
    page = alice_client.get("/tasks/?status=queued").content.decode()
    assert 'id="tasks-region" data-live="tasks" data-noun="task" data-query="status=queued"' in page
    assert 'data-first-page="1"' in page

    started = start(task_handlers.waits_for_mail)
    region = alice_client.get(
        "/tasks/?status=queued", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="tasks-region"
    ).content.decode()

    assert region.lstrip().startswith('<div id="tasks-region"')
    assert f'id="task-{started.id}"' in region and f'id="task-{echo_task.id}"' not in region


def test_a_later_page_of_tasks_updates_its_rows_but_takes_no_new_ones(alice_client, echo_task):
    first = alice_client.get("/tasks/").content.decode()
    assert 'data-live="tasks"' in first and 'data-first-page="1"' in first

    later = alice_client.get("/tasks/?after=" + encode_cursor(timezone.now(), uuid7()))

    assert 'data-live="tasks"' in later.content.decode()
    assert 'data-first-page="0"' in later.content.decode()


def test_load_older_tasks_fetches_only_the_rows_of_the_next_page(alice_client, echo_task):
    newer = start(task_handlers.echo)
    response = alice_client.get(
        "/tasks/",
        {"after": row_key(Task.objects.get(id=newer.id).created_at, newer.id)},
        HTTP_HX_REQUEST="true",
    )

    rows = response.content.decode()
    assert rows.lstrip().startswith(f'<tr id="task-{echo_task.id}"')
    assert f'id="task-{newer.id}"' not in rows and "<table" not in rows


def test_the_schedules_page_reads_its_rows_once_and_writes_nothing(alice_client):
    alice_client.get("/schedules/")  # the first view makes the rows

    with CaptureQueriesContext(connection) as queries:
        alice_client.get("/schedules/")

    on_schedules = [q["sql"] for q in queries if "hotapp_schedule" in q["sql"]]
    assert len(on_schedules) == 1 and on_schedules[0].startswith("SELECT")
    assert not [q for q in queries if q["sql"].startswith(("INSERT", "UPDATE", "DELETE"))]
