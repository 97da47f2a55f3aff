"""The runs list: filters, payload search, keyset pagination and clear messages for bad input."""

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from hotapp.models import Run
from hotapp.querysets import filtered_page
from hotapp.search import Search
from runtime import cancel_run, executor, rerun, send
from tests.conftest import drain

pytestmark = pytest.mark.django_db


def shown_ids(response) -> list[str]:
    return re.findall(r'id="run-([0-9a-f-]{36})"', response.content.decode())


@pytest.fixture
def orders():
    for n in range(3):
        send(
            "order:created",
            {"order_id": 40 + n, "customer": {"email": f"c{n}@example.com"}, "items": []},
        )
    drain()


def test_it_lists_runs_newest_first_with_status_attempt_and_trigger(alice_client, orders):
    response = alice_client.get("/")
    page = response.content.decode()

    ids = shown_ids(response)
    expected = [str(r.id) for r in Run.objects.order_by("-created_at", "-id")]
    assert ids == expected
    assert "status-failed" in page and "status-succeeded" in page
    assert "↻1" in page
    assert "order:shipped" in page
    assert 'title="hotapp.demo.handlers.on_order_paid"' in page


def test_it_filters_by_several_statuses_at_once(alice_client, orders):
    send("test:downstream")  # stays queued
    response = alice_client.get("/?status=failed_attempt&status=queued")

    statuses = set(Run.objects.filter(id__in=shown_ids(response)).values_list("status", flat=True))
    assert statuses == {"failed", "queued"}
    assert len(shown_ids(response)) == 4


def test_it_filters_by_function_and_by_event_type(alice_client, orders):
    by_function = alice_client.get("/?function=hotapp.demo.handlers.on_order_paid")
    by_type = alice_client.get("/?event_type=order:shipped")

    assert len(shown_ids(by_function)) == 3
    assert {Run.objects.get(id=i).function for i in shown_ids(by_function)} == {
        "hotapp.demo.handlers.on_order_paid"
    }
    assert {Run.objects.get(id=i).event_type for i in shown_ids(by_type)} == {"order:shipped"}


def test_it_filters_by_time_range(alice_client, orders):
    old = Run.objects.order_by("created_at").first()
    Run.objects.filter(id=old.id).update(created_at=timezone.now() - timedelta(days=3))
    since = (timezone.now() - timedelta(days=4)).strftime("%Y-%m-%dT%H:%M")
    until = (timezone.now() - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")

    response = alice_client.get(f"/?since={since}&until={until}")

    assert shown_ids(response) == [str(old.id)]


def test_a_key_value_search_finds_runs_by_a_nested_payload_value(alice_client, orders):
    response = alice_client.get("/", {"q": "customer.email:c1@example.com"})

    runs = Run.objects.filter(id__in=shown_ids(response))
    assert {r.input["customer"]["email"] for r in runs} == {"c1@example.com"}
    assert runs.count() == 2  # the failed first attempt and its retry


def test_a_key_value_search_matches_numbers_and_results(alice_client, orders):
    by_number = alice_client.get("/", {"q": "order_id:41"})
    by_result = alice_client.get("/", {"q": "tracking:TRK000042"})

    assert {Run.objects.get(id=i).input.get("order_id") for i in shown_ids(by_number)} == {41}
    assert len(shown_ids(by_number)) == 4  # every step of order 41 carries its id
    # on_order_paid returned the tracking number; on_order_shipped received it as input.
    assert {Run.objects.get(id=i).function.rsplit(".", 1)[1] for i in shown_ids(by_result)} == {
        "on_order_paid",
        "on_order_shipped",
    }


def test_a_free_text_search_looks_in_input_result_and_error(alice_client, orders):
    in_input = alice_client.get("/", {"q": "c2@example"})
    in_error = alice_client.get("/", {"q": '"card network"'})

    assert len(shown_ids(in_input)) == 2
    assert {Run.objects.get(id=i).status for i in shown_ids(in_error)} == {"failed"}
    assert len(shown_ids(in_error)) == 3


def test_search_terms_combine_with_filters(alice_client, orders):
    response = alice_client.get("/", {"q": "order_id:40", "status": "succeeded"})

    runs = Run.objects.filter(id__in=shown_ids(response))
    assert {r.status for r in runs} == {"succeeded"}
    assert sorted((r.function.rsplit(".", 1)[1], r.attempt) for r in runs) == [
        ("on_order_created", 2),
        ("on_order_paid", 1),
        ("on_order_shipped", 1),
    ]


def test_search_wildcards_are_taken_literally(alice_client, orders):
    response = alice_client.get("/", {"q": "%%%"})

    assert shown_ids(response) == []


@pytest.mark.parametrize(
    "query, message",
    [
        ("status=exploded", "exploded is not one of the available choices"),
        ("since=yesterday", "Enter a valid date/time"),
        ("since=2026-01-02T00:00&until=2026-01-01T00:00", "must be later"),
        ("q=%22unclosed", "quote"),
        ("q=:42", "needs a key and a value"),
        ("q=order_id:", "needs a key and a value"),
        ("q=ab", "too short"),
        ("q=a..b:1", "not a key path"),
        ("after=garbage", "page link is broken"),
    ],
)
def test_bad_filter_input_gets_a_clear_message_not_an_error(alice_client, orders, query, message):
    response = alice_client.get("/?" + query)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert shown_ids(response) == []


def test_keyset_pagination_walks_every_run_once(alice_client, settings, monkeypatch):
    monkeypatch.setattr("hotapp.views.PAGE_SIZE", 4)
    for n in range(5):
        send("test:downstream", {"n": n})
    send("test:fanout")
    send("test:fanout")  # 9 runs, some created in the same transaction
    seen: list[str] = []
    url = "/"
    while url:
        response = alice_client.get(url)
        seen += shown_ids(response)
        more = re.search(r'<a href="(\?[^"]*after=[^"]+)"', response.content.decode())
        url = "/" + more.group(1).replace("&amp;", "&") if more else ""

    assert len(seen) == len(set(seen)) == 9
    assert seen == [str(r.id) for r in Run.objects.order_by("-created_at", "-id")]


def test_the_next_page_keeps_the_filters(alice_client, monkeypatch, orders):
    monkeypatch.setattr("hotapp.views.PAGE_SIZE", 1)
    page = alice_client.get("/?status=succeeded").content.decode()

    link = re.search(r'<a href="(\?[^"]*)"', page).group(1)
    assert "status=succeeded" in link and "after=" in link


def test_the_runs_list_reads_no_payloads(alice_client, monkeypatch):
    monkeypatch.setattr("hotapp.views.PAGE_SIZE", 2)
    for n in range(3):
        send("test:downstream", {"n": n, "blob": "x" * 100_000})
    drain()  # results too

    with CaptureQueriesContext(connection) as queries:
        first = alice_client.get("/")
        after = re.search(r"after=([^\"&]+)", first.content.decode()).group(1)
        alice_client.get(f"/?after={after}", HTTP_HX_REQUEST="true")

    assert len(first.content) < 20_000
    selects = [q["sql"] for q in queries if '"hotapp_run"' in q["sql"]]
    assert len(selects) == 2
    for column in ("input", "result", "error_traceback", "retry_policy"):
        assert not any(f'"hotapp_run"."{column}"' in sql for sql in selects), column


def test_htmx_gets_only_the_fragment_it_asks_for(alice_client, orders, monkeypatch):
    region = alice_client.get(
        "/?status=failed_attempt", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="runs-region"
    )
    monkeypatch.setattr("hotapp.views.PAGE_SIZE", 2)
    first = alice_client.get("/").content.decode()
    after = re.search(r"after=([^\"&]+)", first).group(1)
    rows = alice_client.get(f"/?after={after}", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="closest tr")

    assert b"<html" not in region.content
    assert region.content.lstrip().startswith(b'<section id="runs-region"')
    assert len(shown_ids(region)) == 3
    assert rows.content.lstrip().startswith(b"<tr id=")
    assert len(shown_ids(rows)) == 2


class FormReader(HTMLParser):
    """The fields of the page's filter form, as a browser without JavaScript submits them."""

    def __init__(self) -> None:
        super().__init__()
        self.form: dict | None = None
        self.fields: dict[str, list[str]] = {}  # name -> the values it can take
        self.buttons: list[str] = []
        self._select: str | None = None
        self._in_form = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == "filters":
            self.form, self._in_form = attrs, True
        elif not self._in_form:
            return
        elif tag == "input":
            self.fields.setdefault(attrs["name"], []).append(attrs.get("value") or "")
        elif tag == "select":
            self._select = attrs["name"]
            self.fields[self._select] = []
        elif tag == "option" and self._select:
            self.fields[self._select].append(attrs["value"])
        elif tag == "button":
            self.buttons.append(attrs.get("type", "submit"))

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "form":
            self._in_form = False


def submit(client, page: str, **values):
    """Fill the filter form's fields and submit it with GET to its action."""
    reader = FormReader()
    reader.feed(page)
    assert reader.form["method"] == "get" and "submit" in reader.buttons
    params = {}
    for name, value in values.items():
        assert name in reader.fields, f"the form has no field {name}"
        options = reader.fields[name]
        if name in ("status", "trigger", "handled"):  # checkboxes, selects: their values
            assert all(v in options for v in ([value] if isinstance(value, str) else value))
        params[name] = value
    return client.get(reader.form["action"], params)


def test_the_filter_form_works_without_javascript(alice_client, orders):
    send("test:downstream", {"order_id": 41})  # queued, and triggered by another event type
    page = alice_client.get("/").content.decode()

    response = submit(
        alice_client,
        page,
        status=["succeeded", "queued"],
        function="hotapp.demo.handlers.on_order_created",
        trigger="event",
        q="order_id:41",
    )

    [run] = Run.objects.filter(id__in=shown_ids(response))
    assert run.function.endswith("on_order_created") and run.attempt == 2
    again = submit(alice_client, response.content.decode(), status="queued", q="order_id:41")
    assert [Run.objects.get(id=i).function for i in shown_ids(again)] == [
        "tests.handlers.downstream"
    ]


def test_it_filters_by_trigger(alice_client, orders):
    paid = Run.objects.get(function__endswith="on_order_paid", input__order_id=40)
    again = rerun(paid.id)

    assert shown_ids(alice_client.get("/?trigger=manual")) == [str(again.id)]
    assert str(again.id) not in shown_ids(alice_client.get("/?trigger=event"))


def test_the_list_shows_when_each_run_started_or_that_it_has_not(alice_client):
    send("test:downstream", {"n": "waits"})
    send("test:downstream", {"n": "cancelled"})
    send("test:downstream", {"n": "runs"})
    cancel_run(Run.objects.get(input__n="cancelled").id)
    ran = Run.objects.get(input__n="runs")
    executor.execute(ran.id)
    ran.refresh_from_db()
    page = alice_client.get("/").content.decode()

    def when(run) -> str:
        row = re.search(rf'<tr id="run-{run.id}".*?</tr>', page, re.S).group(0)
        return re.sub(r"<[^>]+>", "", re.findall(r'<td class="when">.*?</td>', row)[0])

    assert when(ran) == timezone.localtime(ran.started_at).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert when(Run.objects.get(input__n="waits")) == "queued"
    assert when(Run.objects.get(input__n="cancelled")) == "—"
    assert "<th>Started</th>" in page


@pytest.fixture
def broad_search(monkeypatch):
    """Make every word count as broad and the search window tiny, to walk windowed pages."""
    monkeypatch.setattr("hotapp.querysets.BROAD_MATCHES", -1)
    monkeypatch.setattr("hotapp.querysets.SEARCH_WINDOW", 5)
    monkeypatch.setattr("hotapp.views.PAGE_SIZE", 3)
    send("test:downstream", {"animal": "okapi"})  # the oldest run
    for n in range(12):
        send("test:downstream", {"animal": "zebra", "n": n})
    drain()


def walk(client, url: str) -> tuple[list[str], list[str]]:
    """Follow "Load/Search older" links to the end; the ids seen and the link texts."""
    seen, links = [], []
    while url:
        page = client.get(url).content.decode()
        seen += re.findall(r'id="run-([0-9a-f-]{36})"', page)
        more = re.search(r'<a href="(\?[^"]*after=[^"]+)"[^>]*>([^<]+)</a>', page)
        url = "/" + more.group(1).replace("&amp;", "&") if more else ""
        links += [more.group(2)] if more else []
    return seen, links


def test_a_broad_word_is_searched_window_by_window_and_finds_every_match_once(
    alice_client, broad_search
):
    seen, _ = walk(alice_client, "/?q=zebra")

    zebras = Run.objects.filter(input__animal="zebra").order_by("-created_at", "-id")
    assert seen == [str(r.id) for r in zebras]


def test_a_window_without_matches_says_so_and_offers_to_search_older_runs(
    alice_client, broad_search
):
    page = alice_client.get("/?q=okapi&status=succeeded").content.decode()

    assert "No matches among the newest 5 runs these filters select." in page
    assert "Search older runs" in page
    seen, links = walk(alice_client, "/?q=okapi&status=succeeded")
    assert seen == [str(Run.objects.get(input__animal="okapi").id)]
    assert set(links) == {"Search older runs"}


def test_a_windowed_search_reads_only_the_columns_a_row_shows(broad_search):
    filters = {"q": Search.parse("zebra"), "after": None}
    rows, _ = filtered_page(Run.objects.for_list(), filters, 3)

    assert len(rows) == 3
    assert {"input", "result", "error_traceback"} <= rows[0].get_deferred_fields()
    assert all(row.function == "tests.handlers.downstream" for row in rows)


def test_a_windowed_search_finds_where_its_window_ends_without_offset(alice_client, broad_search):
    with CaptureQueriesContext(connection) as queries:
        seen, links = walk(alice_client, "/?q=okapi&status=succeeded")

    assert seen == [str(Run.objects.get(input__animal="okapi").id)]
    assert len(links) == 2  # 13 rows: windows of 5, 5 and 3
    assert not any("OFFSET" in q["sql"].upper() for q in queries)
