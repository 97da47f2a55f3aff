"""API tokens in a real browser: made on the tokens page, shown once, used by a script over real
HTTP, revoked (fixtures from tests/test_browser.py)."""

import json
import urllib.error
import urllib.request

import pytest

from hotapp.models import ApiToken, Run
from runtime import send
from tests import test_browser
from tests.conftest import drain
from tests.test_browser import shot

pytestmark = pytest.mark.services
# The fixtures, shared: a live Daphne server, Chromium, and a page logged in as alice.
browser, daphne_server, page = test_browser.browser, test_browser.daphne_server, test_browser.page


def call(url: str, secret: str, method: str = "GET") -> tuple[int, dict]:
    request = urllib.request.Request(
        url, method=method, headers={"Authorization": f"Bearer {secret}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_user_makes_a_token_sees_it_once_uses_it_and_revokes_it(page, daphne_server):
    send("test:always-fails", {"k": 1})
    drain()
    failed = Run.objects.order_by("-attempt").first()

    page.click("header >> text=API tokens")
    page.fill("input[name=name]", "nightly report")
    page.click("button:has-text('Create token')")
    secret = page.input_value("#new-token input.secret")
    assert secret.startswith("hot_")
    assert page.is_visible("text=it will not be shown again")
    shot(page, "tokens-created")

    # A script, over real HTTP, acting as alice: no cookie, no CSRF token.
    status, _ = call(f"{daphne_server.url}/api/runs/{failed.id}/retry/", secret, "POST")
    assert status == 201

    page.goto("/tokens/")
    assert secret not in page.content()
    assert page.is_visible(f"text={secret[:12]}…")
    page.click(f"#token-{ApiToken.objects.get().id} button:has-text('Revoke')")
    page.wait_for_selector("text=revoked")
    shot(page, "tokens-revoked")
    status, body = call(f"{daphne_server.url}/api/runs/", secret)
    assert status == 401 and body["error"]["code"] == "unauthenticated"

    # The run's page says who retried it, and how.
    page.goto(f"/runs/{failed.id}/")
    history = page.inner_text("section.history")
    assert "Retried by alice at" in history and "via API" in history
    shot(page, "run-history")
