"""Looking and acting are separate permissions: `hotapp.view_run` to see pages, API and the live
socket; `hotapp.operate_run` as well to act. dave is logged in with neither, bob may only look."""

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from hotapp.consumers import LiveConsumer
from hotapp.models import ApiToken, Run, Schedule, TaskStatus
from runtime import schedules, send, start
from tests import task_handlers
from tests.conftest import drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def order():
    send("order:created", {"order_id": 8, "items": []})
    drain()
    return Run.objects.filter(status="failed").order_by("-attempt").first()


def pages(run) -> list[str]:
    return [
        "/",
        "/overview/",
        "/events/",
        f"/events/{run.event_id}/",
        f"/runs/{run.id}/",
        f"/runs/{run.id}/trace.json",
        "/tasks/",
        "/schedules/",
        "/tokens/",
    ]


def test_a_user_without_the_view_permission_gets_a_page_saying_which_to_ask_for(dave_client, order):
    for url in pages(order):
        response = dave_client.get(url)
        assert response.status_code == 403, url
        page = response.content.decode()
        assert "logged in as <strong>dave</strong>" in page and "hotapp.view_run" in page, url
    # The header offers no links that would only say the same.
    assert 'href="/events/"' not in page and 'href="/tokens/"' not in page


def test_a_user_without_the_view_permission_gets_json_403s_from_the_api(dave_client, order):
    for url in ("/api/runs/", f"/api/runs/{order.id}/", "/api/events/"):
        response = dave_client.get(url)
        assert response.status_code == 403, url
        assert response.json()["error"]["code"] == "permission_denied"
        assert "hotapp.view_run" in response.json()["error"]["message"]


def test_a_token_of_a_user_without_the_view_permission_is_refused(client, dave):
    _, secret = ApiToken.issue(dave, "script")

    response = client.get("/api/runs/", HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert response.status_code == 403


@pytest.mark.django_db(transaction=True)  # the consumer reads the permissions in a thread
def test_the_live_socket_refuses_a_user_without_the_view_permission(redis_client, dave, bob):
    async def connects(user):
        communicator = WebsocketCommunicator(LiveConsumer.as_asgi(), "/ws/live/")
        communicator.scope["user"] = user
        connected, code = await communicator.connect()
        if connected:
            await communicator.disconnect()
        return connected, code

    assert async_to_sync(connects)(dave) == (False, 4403)
    assert async_to_sync(connects)(bob)[0] is True


def test_a_viewer_sees_every_page_but_no_action_buttons(bob_client, order):
    for url in pages(order):
        assert bob_client.get(url).status_code == 200, url
    page = bob_client.get(f"/runs/{order.id}/").content.decode()
    assert ">Retry<" not in page and ">Rerun<" not in page


def test_a_viewer_cannot_retry_rerun_or_cancel_from_a_page(bob_client, order):
    for action in ("retry", "rerun", "cancel"):
        response = bob_client.post(f"/runs/{order.id}/{action}/")
        assert response.status_code == 403
        assert "hotapp.operate_run" in response.content.decode()
    assert Run.objects.count() == 4


def test_a_viewer_cannot_retry_rerun_or_cancel_through_the_api(bob_client, order):
    for action in ("retry", "rerun", "cancel"):
        response = bob_client.post(f"/api/runs/{order.id}/{action}/")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
    assert Run.objects.count() == 4


def test_a_viewer_cannot_act_on_tasks_or_schedules(bob_client):
    handle = start(task_handlers.waits_for_mail)
    schedules.sync()
    schedule = Schedule.objects.get(name="tests.task_handlers.every_ten_seconds")

    for action in ("send", "close", "cancel"):
        assert bob_client.post(f"/tasks/{handle.id}/{action}/").status_code == 403
    for action in ("pause", "resume"):
        assert bob_client.post(f"/schedules/{schedule.id}/{action}/").status_code == 403
    assert handle.status == TaskStatus.QUEUED
    assert not Schedule.objects.get(id=schedule.id).is_paused


def test_a_superuser_may_look_and_act(client, django_user_model, order):
    client.force_login(django_user_model.objects.create_superuser("root", password="x"))

    assert client.get(f"/runs/{order.id}/").status_code == 200
    assert client.post(f"/api/runs/{order.id}/rerun/").status_code == 201


def test_an_operator_without_the_view_permission_cannot_act(client, django_user_model, order):
    from tests.conftest import user_with

    client.force_login(user_with(django_user_model, "erin", "operate_run"))

    assert client.post(f"/runs/{order.id}/retry/").status_code == 403
    assert client.post(f"/api/runs/{order.id}/retry/").status_code == 403
    assert Run.objects.count() == 4
