"""Hot App in a real browser: Playwright driving Debian's Chromium against a live Daphne server,
with a real Celery worker and the Redis channel layer."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hotapp.models import Run, RunStatus
from runtime import send
from tests.conftest import ROOT, subprocess_database_url, wait_for

pytestmark = pytest.mark.services
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("HOT_SCREENSHOTS", "/tmp/hot-screenshots"))


class DaphneServer:
    """`daphne hotproject.asgi:application` on a free port, against the test database."""

    def __init__(self, log_path: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = log_path.open("w")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "TEST_DATABASE_URL": subprocess_database_url(),
            # Its access log is read while it runs (tests/test_live_redis.py).
            "PYTHONUNBUFFERED": "1",
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "hotproject.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

        def listening():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return self.proc.poll() is not None

        wait_for(listening, timeout=30, what="daphne to listen")
        assert self.proc.poll() is None, "daphne exited; see its log"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def daphne_server(transactional_db, redis_client, tmp_path):
    server = DaphneServer(tmp_path / "daphne.log")
    server.start()
    yield server
    server.stop()
    server.log.close()


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # between browser steps are still plain synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            yield chromium
            chromium.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def page(browser, daphne_server, alice):
    context = browser.new_context(
        viewport={"width": 1360, "height": 900}, base_url=daphne_server.url
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-pass")
    page.click("button[type=submit]")
    page.wait_for_selector("#runs-region")
    yield page
    context.close()
    assert not errors, errors


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def live_dot_is_on(page) -> None:
    page.wait_for_selector("#live-state.on", timeout=10_000)


def test_a_user_filters_searches_retries_and_watches_the_new_attempt_succeed(page, celery_worker):
    for n in (1, 2):
        send("order:created", {"order_id": n, "items": [{"sku": "mug", "price": 3}]})
    send("test:fixed-by-hand", {"order_id": 77})
    wait_for(
        lambda: (
            Run.objects.filter(function__endswith="on_order_shipped", status="succeeded").count()
            == 2
            and Run.objects.filter(
                function="tests.handlers.fixed_by_hand", status="failed"
            ).exists()
        ),
        what="the workflows to settle",
    )

    page.goto("/")
    live_dot_is_on(page)
    shot(page, "runs")
    assert page.locator("#run-rows tr[id^=run-]").count() == Run.objects.count()

    # Filter by status: every failed attempt, including the orders' recovered first attempts.
    page.check("input[name=status][value=failed_attempt]")
    page.wait_for_url("**/?status=failed_attempt*")
    page.wait_for_function("document.querySelectorAll('#run-rows tr[id^=run-]').length === 3")
    assert set(page.locator("#run-rows .badge[class*=status-]").all_inner_texts()) == {"Failed"}

    # And by function.
    page.fill("input[name=function]", "tests.handlers.fixed_by_hand")
    page.press("input[name=function]", "Enter")
    page.wait_for_function("document.querySelectorAll('#run-rows tr[id^=run-]').length === 1")
    assert "function=tests.handlers.fixed_by_hand" in page.url

    # Search a payload value across all runs.
    page.goto("/")
    page.fill("input[name=q]", "order_id:77")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/?*q=order_id*77*")
    page.wait_for_function("document.querySelectorAll('#run-rows tr[id^=run-]').length === 1")
    shot(page, "runs-search")

    # Open the failed run and press Retry.
    page.click("#run-rows tr td.fn a")
    page.wait_for_selector("#run-live[data-status=failed]")
    live_dot_is_on(page)
    page.evaluate("window.__notReloaded = true")
    page.click("button:has-text('Retry')")
    page.wait_for_selector("ol.attempts li:has-text('Attempt 2')")
    page.wait_for_selector(
        "ol.attempts li:has-text('Attempt 2') .badge.status-succeeded", timeout=15_000
    )
    assert page.evaluate("window.__notReloaded") is True
    shot(page, "run-retried")
    retry = Run.objects.get(function="tests.handlers.fixed_by_hand", attempt=2)
    assert retry.status == RunStatus.SUCCEEDED and retry.result == {"charged": 77}


def test_the_lineage_graph_shows_every_step_of_the_three_step_workflow(page, celery_worker):
    send("order:created", {"order_id": 9, "items": [{"sku": "tee", "price": 20}]})
    wait_for(
        lambda: Run.objects.filter(
            function__endswith="on_order_shipped", status="succeeded"
        ).exists(),
        what="the workflow to finish",
    )
    shipped = Run.objects.get(function__endswith="on_order_shipped")

    page.goto(f"/runs/{shipped.id}/")
    graph = page.locator("svg.lineage")
    labels = graph.locator(".node text.label").all_text_contents()
    assert sorted(labels) == sorted(
        [
            "order:created",
            "on_order_created",
            "on_order_created",
            "order:paid",
            "on_order_paid",
            "order:shipped",
            "on_order_shipped",
        ]
    )
    assert graph.locator(".node.run.status-failed").count() == 1
    assert graph.locator(".node.focus").count() == 1
    # Each node links to its page.
    graph.locator(".node.event", has_text="order:paid").click()
    page.wait_for_selector("h1:has-text('order:paid')")
    shot(page, "event")


def test_new_runs_appear_live_and_statuses_change_in_place(page, celery_worker):
    page.goto("/")
    live_dot_is_on(page)
    page.evaluate("window.__notReloaded = true")

    send("test:downstream", {"hello": "live"})
    run = wait_for(lambda: Run.objects.filter(status="succeeded").first(), what="the run")
    row = page.locator(f"#run-{run.id}")
    row.wait_for(timeout=10_000)
    row.locator(".badge.status-succeeded").wait_for(timeout=10_000)
    assert page.evaluate("window.__notReloaded") is True


def test_new_runs_wait_behind_a_pill_while_the_user_is_scrolled_away(
    page, celery_worker, monkeypatch
):
    for n in range(60):  # enough rows to scroll
        send("test:downstream", {"n": n})
    wait_for(lambda: Run.objects.filter(status="succeeded").count() == 60, what="the runs")
    page.goto("/")
    live_dot_is_on(page)
    page.mouse.wheel(0, 2000)
    page.wait_for_function("window.scrollY > 100")

    send("test:downstream", {"n": "late"})
    pill = page.locator("#new-runs")
    pill.wait_for(state="visible", timeout=10_000)
    assert "Paused" in pill.inner_text() and "new run" in pill.inner_text()
    late = Run.objects.get(input={"n": "late"})
    assert page.locator(f"#run-{late.id}").count() == 0
    pill.click()
    page.locator(f"#run-{late.id}").wait_for(timeout=5_000)
    assert page.locator("#run-rows tr[id^=run-]").first.get_attribute("id") == f"run-{late.id}"


def test_a_burst_keeps_the_first_page_to_one_page_of_the_newest_runs(page, celery_worker):
    from hotapp.views import PAGE_SIZE

    page.goto("/")
    live_dot_is_on(page)
    page.evaluate("window.__notReloaded = true")
    # Count what the table ever held at once, to see that it never grew past a page.
    page.evaluate(
        """window.__most = 0;
        new MutationObserver(() => {
          const n = document.querySelectorAll('#run-rows tr[id^=run-]').length;
          window.__most = Math.max(window.__most, n);
        }).observe(document.getElementById('run-rows'), { childList: true });"""
    )

    burst = 3 * PAGE_SIZE  # more than a batch (MAX_ROWS) and than a page
    for n in range(burst):
        send("test:downstream", {"n": n})
    wait_for(
        lambda: Run.objects.filter(status="succeeded").count() == burst,
        timeout=60,
        what="the burst to run",
    )
    newest = [
        f"run-{i}" for i in Run.objects.newest_first().values_list("id", flat=True)[: 2 * PAGE_SIZE]
    ]
    page.wait_for_function(
        """([ids, size]) => {
          const rows = [...document.querySelectorAll('#run-rows tr[id^=run-]')];
          return rows.length === size && rows.every((tr, i) => tr.id === ids[i])
            && rows.every((tr) => tr.querySelector('.badge.status-succeeded'));
        }""",
        arg=[newest[:PAGE_SIZE], PAGE_SIZE],
        timeout=30_000,
    )
    assert page.evaluate("window.__most") <= PAGE_SIZE
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator("#new-runs").is_hidden()
    shot(page, "runs-after-burst")

    # The rows that fell off the page are the next page, not lost.
    page.click("#run-rows tr.more a")
    page.wait_for_function(
        f"document.querySelectorAll('#run-rows tr[id^=run-]').length === {2 * PAGE_SIZE}"
    )
    shown = page.eval_on_selector_all("#run-rows tr[id^=run-]", "rows => rows.map(r => r.id)")
    assert shown == newest


def test_a_long_pause_holds_one_page_of_the_newest_rows(page, celery_worker):
    from hotapp.views import PAGE_SIZE

    for n in range(PAGE_SIZE + 10):  # enough rows to scroll
        send("test:downstream", {"n": n})
    wait_for(
        lambda: Run.objects.filter(status="succeeded").count() == PAGE_SIZE + 10,
        what="the runs",
    )
    page.goto("/")
    live_dot_is_on(page)
    page.mouse.wheel(0, 2000)
    page.wait_for_function("window.scrollY > 100")
    shown_before = page.eval_on_selector_all("#run-rows tr[id^=run-]", "rows => rows.length")

    for n in range(PAGE_SIZE + 5):
        send("test:downstream", {"n": f"late {n}"})
    pill = page.locator("#new-runs")
    page.wait_for_function(
        f"document.getElementById('new-runs').textContent.includes('{PAGE_SIZE}+ new runs')",
        timeout=30_000,
    )
    assert "Paused" in pill.inner_text()
    shown = page.eval_on_selector_all("#run-rows tr[id^=run-]", "rows => rows.length")
    assert shown == shown_before  # nothing moved under the user
    pill.click()
    newest = [f"run-{i}" for i in Run.objects.newest_first().values_list("id", flat=True)]
    page.wait_for_function(
        """(ids) => {
          const rows = [...document.querySelectorAll('#run-rows tr[id^=run-]')];
          return rows.length === ids.length && rows.every((tr, i) => tr.id === ids[i]);
        }""",
        arg=newest[:PAGE_SIZE],
        timeout=30_000,
    )
    assert pill.is_hidden()


def test_the_trace_tree_expands_and_payloads_stay_text(page, celery_worker):
    send("trace:nested", {"items": [{"price": 10, "name": "<img src=x onerror=alert(1)>"}]})
    run = wait_for(lambda: Run.objects.filter(status="succeeded").first(), what="the run")

    page.goto(f"/runs/{run.id}/")
    page.wait_for_selector(".trace-row")
    names = page.locator(".trace-name").all_inner_texts()
    assert any("nested" in n for n in names) and any("price" in n for n in names)
    add_tax_rows = page.locator(".trace-row", has_text="add_tax")
    if add_tax_rows.count() == 0:
        page.locator(".trace-row", has_text="price").locator(".trace-toggle").click()
    page.locator(".trace-row", has_text="add_tax").first.click()
    page.wait_for_selector(".trace-detail:has-text('returned')")
    assert page.locator("img[src=x]").count() == 0
    assert "<img src=x" in page.locator("pre.json").first.inner_text()
    shot(page, "trace")


def test_a_dropped_connection_reconnects_and_catches_up(page, daphne_server, celery_worker):
    page.goto("/")
    live_dot_is_on(page)
    page.evaluate("window.__notReloaded = true")

    daphne_server.stop()
    page.wait_for_selector("#live-state.off", timeout=10_000)
    send("test:downstream", {"sent": "while the page was cut off"})
    run = wait_for(lambda: Run.objects.filter(status="succeeded").first(), what="the run")
    daphne_server.start()

    live_dot_is_on(page)
    page.locator(f"#run-{run.id}").wait_for(timeout=15_000)
    assert page.evaluate("window.__notReloaded") is True


def test_a_user_talks_to_a_running_task_and_cancels_it(page, celery_worker):
    from runtime import start
    from tests import task_handlers

    handle = start(task_handlers.echo)
    wait_for(lambda: handle.status == "running", what="the task to start")

    page.goto(f"/tasks/{handle.id}/")
    live_dot_is_on(page)
    page.fill("textarea[name=message]", '{"hello": "task"}')
    # Something else talks to the task meanwhile: the page updates live, the draft survives.
    handle.send("from a script")
    page.locator("ol.messages-flow li.msg-out", has_text="from a script").wait_for(timeout=10_000)
    assert page.input_value("textarea[name=message]") == '{"hello": "task"}'
    page.click("button:has-text('Send')")
    # The task's reply arrives over the websocket, without a reload.
    page.locator("ol.messages-flow li.msg-out", has_text="hello").wait_for(timeout=10_000)
    page.locator("ol.timeline li", has_text="count").first.wait_for(timeout=10_000)
    shot(page, "task")

    page.click("button:has-text('Cancel')")
    page.locator("h1 .badge.task-cancelled").wait_for(timeout=10_000)
    assert handle.status == "cancelled"


def test_a_user_pauses_and_resumes_a_schedule(page):
    page.goto("/schedules/")
    card = page.locator("section.schedule", has_text="every_ten_seconds")
    card.locator("button:has-text('Pause')").click()
    page.locator("section.schedule", has_text="every_ten_seconds").locator(
        ".badge", has_text="paused"
    ).wait_for()
    shot(page, "schedules")
    page.locator("section.schedule", has_text="every_ten_seconds").locator(
        "button:has-text('Resume')"
    ).click()
    page.locator("section.schedule", has_text="every_ten_seconds").locator(
        ".badge", has_text="active"
    ).wait_for()


# Records what the page sends over its websocket, and keeps the socket to hand messages to.
SOCKET_SPY = """
window.__subs = [];
const realSend = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  window.__socket = this;
  window.__subs.push(JSON.parse(data));
  return realSend.call(this, data);
};
"""


def settled(page) -> None:
    """Wait for the next htmx:afterSettle (live.js's own listener has run by then)."""
    page.wait_for_function("window.__settled === true")
    page.evaluate("window.__settled = false")


def test_loading_older_runs_keeps_the_live_subscription_and_the_paused_rows(page, celery_worker):
    from hotapp.views import PAGE_SIZE

    for n in range(PAGE_SIZE + 10):
        send("test:downstream", {"n": n})
    wait_for(
        lambda: Run.objects.filter(status="succeeded").count() == PAGE_SIZE + 10, what="the runs"
    )
    page.context.add_init_script(SOCKET_SPY)
    page.goto("/")
    live_dot_is_on(page)
    page.evaluate(
        "document.addEventListener('htmx:afterSettle', () => { window.__settled = true; })"
    )
    page.mouse.wheel(0, 5000)
    page.wait_for_function("window.scrollY > 100")
    send("test:downstream", {"n": "late"})
    pill = page.locator("#new-runs")
    pill.wait_for(state="visible", timeout=10_000)

    page.click("#run-rows tr.more a")
    settled(page)
    assert page.locator("#run-rows tr[id^=run-]").count() == PAGE_SIZE + 10
    assert page.evaluate("window.__subs.length") == 1  # no new subscription
    assert pill.is_visible() and "1 new run" in pill.inner_text()  # the paused row still waits


def test_a_message_for_an_older_subscription_is_dropped(page):
    page.context.add_init_script(SOCKET_SPY)
    page.goto("/")
    live_dot_is_on(page)
    page.wait_for_function("window.__subs.length === 1")
    page.evaluate(
        "document.addEventListener('htmx:afterSettle', () => { window.__settled = true; })"
    )
    page.check("input[name=status][value=failed]")
    settled(page)
    subs = page.evaluate("window.__subs")
    assert [s["query"].split("&")[0] for s in subs] == ["", "status=failed"]
    assert subs[1]["sub"] > subs[0]["sub"]

    def deliver(sub_id, run_id):
        key = f"2030-01-01T00:00:00.000000+00:00|{run_id}"
        row = f'<tr id="run-{run_id}" data-key="{key}"><td>stale</td></tr>'
        message = {
            "type": "update",
            "sub": sub_id,
            "rows": [{"id": f"run-{run_id}", "key": key, "html": row}],
            "gone": [],
            "more": False,
            "page_size": 50,
        }
        page.evaluate("m => window.__socket.onmessage({data: JSON.stringify(m)})", message)

    deliver(subs[0]["sub"], "0000-old")  # a check made for the unfiltered list
    deliver(subs[1]["sub"], "0000-new")
    page.locator("#run-0000-new").wait_for()
    assert page.locator("#run-0000-old").count() == 0


def test_a_list_told_to_reload_fetches_its_region_and_follows_it(page):
    page.context.add_init_script(SOCKET_SPY)
    page.goto("/?status=failed")
    live_dot_is_on(page)
    page.wait_for_function("window.__subs.length === 1")
    page.evaluate(
        """window.__notReloaded = true;
        document.addEventListener('htmx:afterSettle', () => { window.__settled = true; });
        document.getElementById('runs-region').dataset.old = '1';"""
    )
    sub = page.evaluate("window.__subs[0].sub")
    page.evaluate(
        "s => window.__socket.onmessage({data: JSON.stringify({type: 'reload', sub: s})})", sub
    )
    settled(page)
    assert page.locator("#runs-region[data-old]").count() == 0  # a fresh region
    assert page.evaluate("window.__notReloaded") is True  # not the whole page
    subs = page.evaluate("window.__subs")
    assert len(subs) == 2 and subs[1]["query"] == "status=failed"
    assert subs[1]["cursor"] == page.get_attribute("#runs-region", "data-cursor")


LONG_FUNCTION = (
    "acme.billing.integrations.payment_providers.handlers."
    "reconcile_the_settlement_report_of_every_payment_provider_with_the_general_ledger"
)
LONG_TYPE = "billing:settlement-report-received-from-the-payment-provider." + "x" * 120


def large_payload() -> dict:
    return {
        "report_id": "r-1",
        "signature": "ab" * 60_000,  # 120 kB without a space to break at
        "lines": [
            {"sku": f"SKU-{n:05d}", "amount": n * 1.25, "memo": "ok " * 20} for n in range(300)
        ],
    }


def test_the_layout_holds_with_a_very_long_function_name_and_a_large_payload(page):
    from django.utils import timezone

    from hotapp.models import Event

    now = timezone.now()
    event = Event.objects.create(
        type=LONG_TYPE, data=large_payload(), stream_id=Event().id, created_at=now, is_handled=True
    )
    common = dict(function=LONG_FUNCTION, trigger="event", event=event, event_type=LONG_TYPE)
    common.update(stream_id=event.stream_id, input=large_payload(), started_at=now)
    failed = Run.objects.create(
        **common,
        status="failed",
        error_type="acme.billing.errors.SettlementReportDoesNotBalanceAgainstTheLedgerError",
        error_message="unbalanced:" + "d" * 3000,
        error_traceback='  File "acme/billing/' + "deep/" * 200 + 'x.py", line 1\n' * 20,
        created_at=now,
        finished_at=now,
    )
    Run.objects.create(
        **common, status="succeeded", result=large_payload(), created_at=now, finished_at=now
    )
    pages = {
        "long-runs": "/",
        "long-run": f"/runs/{failed.id}/",
        "long-events": "/events/",
        "long-event": f"/events/{event.id}/",
        "long-overview": "/overview/",
    }
    for name, url in pages.items():
        page.goto(url)
        page.wait_for_load_state("networkidle")
        shot(page, name)
        widths = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth, document.body.scrollWidth]"
        )
        assert max(widths[0], widths[2]) <= widths[1], (name, widths)
        # No badge sticks out of its cell to be cut off (a cell ellipsizes only its text).
        clipped = page.evaluate(
            """[...document.querySelectorAll('td .badge')].filter((el) => {
              const cell = el.closest('td').getBoundingClientRect();
              return el.getBoundingClientRect().right > cell.right + 0.5;
            }).map((el) => el.textContent.slice(0, 40))"""
        )
        assert not clipped, (name, clipped)
