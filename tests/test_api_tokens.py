"""API tokens: made on the tokens page or with `hot token`, shown once, stored as a hash,
revocable; `Authorization: Bearer` acts as the token's user, without CSRF."""

import hashlib
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from hotapp.models import ApiToken, Run
from runtime import send
from tests.conftest import drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def order():
    send("order:created", {"order_id": 5, "items": []})
    drain()
    return Run.objects.get(function__endswith="on_order_paid")


def bearer(secret: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def token_of(user, name="script") -> str:
    return ApiToken.issue(user, name)[1]


def test_a_new_token_is_shown_once_and_only_its_hash_is_stored(alice_client, alice):
    created = alice_client.post("/tokens/", {"name": "nightly report"})
    page = created.content.decode()

    [secret] = re.findall(r'value="(hot_[^"]+)"', page)
    token = ApiToken.objects.get(user=alice)
    assert token.name == "nightly report" and token.prefix == secret[:12]
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(ApiToken.objects.values().get())
    assert "it will not be shown again" in page and created["Cache-Control"] == "no-store"
    again = alice_client.get("/tokens/").content.decode()
    assert secret not in again and f"{secret[:12]}…" in again


def test_a_token_needs_a_name(alice_client):
    response = alice_client.post("/tokens/", {"name": "  "})

    assert "This field is required" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_a_bearer_token_reads_the_api_as_its_user(client, bob, order):
    response = client.get("/api/runs/", **bearer(token_of(bob)))

    assert response.status_code == 200
    assert len(response.json()["results"]) == Run.objects.count() == 4
    assert ApiToken.objects.get().last_used_at is not None


@pytest.mark.parametrize(
    "header",
    ["Bearer hot_not-a-real-token", "Bearer ", "Basic YWxpY2U6YWxpY2UtcGFzcw==", "hot_x"],
)
def test_a_bad_token_is_a_json_401(client, header):
    response = client.get("/api/runs/", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_a_revoked_token_is_a_401_even_with_a_session(alice_client, alice, order):
    secret = token_of(alice)
    token = ApiToken.objects.get()
    alice_client.post(f"/tokens/{token.id}/revoke/")

    token.refresh_from_db()
    assert token.revoked_at is not None
    # A bad token is not passed over for the session cookie beside it.
    assert alice_client.get("/api/runs/", **bearer(secret)).status_code == 401


def test_a_deactivated_users_token_stops_working(client, bob):
    secret = token_of(bob)
    bob.is_active = False
    bob.save()

    assert client.get("/api/runs/", **bearer(secret)).status_code == 401


def test_a_bearer_post_needs_no_csrf_token(alice, order):
    client = Client(enforce_csrf_checks=True)

    response = client.post(f"/api/runs/{order.id}/rerun/", **bearer(token_of(alice)))

    assert response.status_code == 201
    assert Run.objects.filter(rerun_of=order).count() == 1


def test_a_session_post_without_the_csrf_token_is_a_json_403(alice, order):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(f"/api/runs/{order.id}/rerun/")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"
    assert not Run.objects.filter(rerun_of=order).exists()


def test_a_session_post_with_the_csrf_token_works(alice, order):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/")  # sets the CSRF cookie, as a page does
    token = client.cookies["csrftoken"].value

    response = client.post(f"/api/runs/{order.id}/rerun/", HTTP_X_CSRFTOKEN=token)

    assert response.status_code == 201


def test_a_page_post_without_the_csrf_token_gets_djangos_page(alice, order):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(f"/runs/{order.id}/rerun/")

    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")
    assert "CSRF verification failed" in response.content.decode()


def test_the_csrf_failure_view_answers_json_under_the_api(rf):
    from django.urls import resolve

    from hotapp.auth import csrf_failure

    request = rf.post("/api/runs/")
    request.resolver_match = resolve("/api/runs/")
    assert csrf_failure(request, "no cookie").status_code == 403
    assert b'"csrf_failed"' in csrf_failure(request, "no cookie").content
    unknown = rf.post("/api/no/such/thing/")
    assert b'"csrf_failed"' in csrf_failure(unknown, "no cookie").content


def test_a_token_acts_with_its_users_permissions(client, bob, order):
    response = client.post(f"/api/runs/{order.id}/rerun/", **bearer(token_of(bob)))

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_the_tokens_page_lists_only_your_own_tokens(alice_client, alice, bob):
    token_of(alice, "mine")
    token_of(bob, "bobs")

    page = alice_client.get("/tokens/").content.decode()

    assert "mine" in page and "bobs" not in page


def test_you_cannot_revoke_someone_elses_token(alice_client, bob):
    token_of(bob)
    token = ApiToken.objects.get()

    assert alice_client.post(f"/tokens/{token.id}/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_the_header_links_to_the_tokens_page(bob_client):
    assert 'href="/tokens/"' in bob_client.get("/").content.decode()


def hot(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("hot", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue().strip()


def test_the_cli_creates_lists_and_revokes_tokens(client, bob, order):
    secret, note = hot("token", "create", "bob", "--name", "cron job")
    token = ApiToken.objects.get()

    assert secret.startswith("hot_") and "not shown again" in note
    assert client.get("/api/runs/", **bearer(secret)).status_code == 200
    listed, _ = hot("token", "list")
    assert f"{token.id}  bob  'cron job'  {secret[:12]}…  active" in listed
    assert secret not in listed
    hot("token", "revoke", str(token.id))
    assert "revoked" in hot("token", "list")[0]
    assert client.get("/api/runs/", **bearer(secret)).status_code == 401


def test_the_cli_says_so_for_an_unknown_user_or_token(db):
    with pytest.raises(CommandError, match="No user is called 'nobody'"):
        hot("token", "create", "nobody", "--name", "x")
    with pytest.raises(CommandError, match="No token has id 99"):
        hot("token", "revoke", "99")
