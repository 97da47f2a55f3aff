"""Every page, the trace API and every action need a login; actions also need a permission."""

import pytest

from hotapp.models import Event, Run
from runtime import send
from tests.conftest import drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def workflow():
    send("order:created", {"order_id": 1, "items": []})
    drain()
    return Run.objects.filter(status="failed").first(), Event.objects.first()


def pages(run, event) -> list[str]:
    return [
        "/",
        "/overview/",
        "/events/",
        f"/runs/{run.id}/",
        f"/runs/{run.id}/trace.json",
        f"/events/{event.id}/",
    ]


def test_it_redirects_anonymous_visitors_to_the_login_page(client, workflow):
    for url in pages(*workflow):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.url.startswith("/login/?next="), url


def test_it_serves_every_page_to_a_logged_in_user(bob_client, workflow):
    for url in pages(*workflow):
        assert bob_client.get(url).status_code == 200, url


def test_a_user_can_log_in_with_the_login_form(client, bob, workflow):
    response = client.post("/login/", {"username": "bob", "password": "bob-pass", "next": "/"})

    assert response.status_code == 302 and response.url == "/"
    assert client.get("/").status_code == 200


def test_a_wrong_password_shows_a_message(client, bob):
    response = client.post("/login/", {"username": "bob", "password": "nope"})

    assert "didn't match" in response.content.decode()


def test_actions_redirect_anonymous_visitors_to_the_login_page(client, workflow):
    run, _ = workflow
    response = client.post(f"/runs/{run.id}/retry/")

    assert response.status_code == 302 and response.url.startswith("/login/")
    assert Run.objects.count() == 4


def test_actions_are_forbidden_without_the_operate_permission(bob_client, workflow):
    run, _ = workflow
    for action in ("retry", "rerun", "cancel"):
        assert bob_client.post(f"/runs/{run.id}/{action}/").status_code == 403
    assert Run.objects.count() == 4


def test_the_run_page_hides_the_action_buttons_from_viewers(bob_client, workflow):
    run, _ = workflow
    page = bob_client.get(f"/runs/{run.id}/").content.decode()

    assert ">Retry<" not in page and ">Rerun<" not in page


def test_actions_refuse_a_get(alice_client, workflow):
    run, _ = workflow
    assert alice_client.get(f"/runs/{run.id}/retry/").status_code == 405


def test_actions_need_a_csrf_token(alice, workflow):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    run, _ = workflow

    assert client.post(f"/runs/{run.id}/retry/").status_code == 403
    assert Run.objects.count() == 4


def websocket(headers: list[tuple[bytes, bytes]]):
    """A websocket to /ws/live/ through the application daphne serves (origin check, session
    auth, routing), as a browser opens it."""
    from channels.testing import WebsocketCommunicator

    from hotproject.asgi import application

    return WebsocketCommunicator(application, "/ws/live/", headers=headers)


def connects(headers: list[tuple[bytes, bytes]]) -> tuple[bool, int | None]:
    from asgiref.sync import async_to_sync

    async def attempt():
        communicator = websocket(headers)
        connected, code = await communicator.connect()
        if connected:
            await communicator.disconnect()
        return connected, code

    return async_to_sync(attempt)()


SAME_ORIGIN = (b"origin", b"http://127.0.0.1:8000")


@pytest.mark.django_db(transaction=True)
def test_the_live_socket_refuses_anonymous_visitors(redis_client):
    assert connects([SAME_ORIGIN]) == (False, 4401)


@pytest.mark.django_db(transaction=True)
def test_the_live_socket_accepts_a_logged_in_user_from_the_same_origin(client, alice, redis_client):
    client.force_login(alice)
    cookie = (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())

    assert connects([SAME_ORIGIN, cookie])[0] is True
    # The same session, from a page of another site, is refused before any consumer runs.
    assert connects([(b"origin", b"http://evil.example"), cookie])[0] is False
    assert connects([cookie])[0] is False  # no Origin at all
