"""The live socket on the Redis channel layer, in production's shape: a real Daphne, Redis and a
browser page left open for longer than the layer's blocking reads.

channels-redis waits in BZPOPMIN for up to 5 s; redis-py 8 gives up on a silent socket after 5 s
by default. Unless the layer's socket outwaits the command (hotapp.conf.redis_channel_layer),
every idle socket's receive loop dies with "Timeout reading from …" and the page reconnects over
and over. `hot dev`'s in-memory layer cannot show this, so it is tested here.
"""

import pytest

from hotapp.models import Run
from runtime import send
from tests import test_browser
from tests.conftest import wait_for

pytestmark = pytest.mark.services
# The fixtures, shared: a live Daphne server, Chromium, and a page logged in as alice.
browser, daphne_server, page = test_browser.browser, test_browser.daphne_server, test_browser.page

# Two of channels-redis's 5 s BZPOPMIN periods past redis-py's default 5 s socket timeout: long
# enough for an idle socket to have died at least once without the fix. This test's one wait.
IDLE_SECONDS = 12

# Counts the page's websocket opens and closes.
SOCKET_COUNTER = """
window.__opens = 0;
window.__closes = 0;
window.WebSocket = class extends window.WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("open", () => { window.__opens += 1; });
    this.addEventListener("close", () => { window.__closes += 1; });
  }
};
"""


def test_an_idle_page_keeps_its_socket_on_the_redis_layer_and_still_gets_updates(
    page, daphne_server, celery_worker
):
    test_browser.live_dot_is_on(page)  # the socket of the page the login landed on
    logged_before = daphne_server.log_path.stat().st_size
    page.context.add_init_script(SOCKET_COUNTER)
    page.goto("/")
    test_browser.live_dot_is_on(page)
    page.evaluate("window.__notReloaded = true")

    page.wait_for_timeout(IDLE_SECONDS * 1000)

    log = daphne_server.log_path.read_text()[logged_before:]
    for sign in ("Timeout reading", "Traceback", "Exception", "ERROR"):
        assert sign not in log, log
    assert log.count('"WSCONNECT /ws/live/"') == 1, log
    assert page.evaluate("[window.__opens, window.__closes]") == [1, 0]
    assert page.get_attribute("#live-state", "class") == "live-state on"

    # The socket that waited still carries updates.
    send("test:downstream", {"after": "the idle spell"})
    run = wait_for(lambda: Run.objects.filter(status="succeeded").first(), what="the run")
    page.locator(f"#run-{run.id} .badge.status-succeeded").wait_for(timeout=10_000)
    assert page.evaluate("[window.__opens, window.__closes]") == [1, 0]
    assert page.evaluate("window.__notReloaded") is True
    test_browser.shot(page, "live-after-idle")
