"""The search box: parsing, and `key:value` terms whose text looks like anything but a key.

The suite runs on PostgreSQL; the embedded default is SQLite, where a term becomes a JSON path
rather than a containment document. The same searches therefore also run in a subprocess on a
fresh SQLite database, as `hot dev` has it (see tests/test_embedded.py).
"""

import json
import re

import pytest
from django.utils import timezone

from hotapp.models import Event, Run
from hotapp.search import Search, SearchError, candidates
from tests.conftest import on_sqlite


def test_it_splits_key_value_terms_and_free_text():
    search = Search.parse(
        'order_id:42 customer.email:a@b.c "card declined" timeout note:"two words"'
    )

    assert search.pairs == (
        (("order_id",), "42"),
        (("customer", "email"), "a@b.c"),
        (("note",), "two words"),
    )
    assert search.words == ("card declined", "timeout")


def test_an_empty_box_is_no_search():
    assert not Search.parse("   ")


def test_a_number_may_be_stored_as_a_number_or_a_string():
    assert candidates("42") == ["42", 42]
    assert candidates("true") == ["true", True]
    assert candidates("a@b.c") == ["a@b.c"]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_numbers_json_cannot_hold_are_only_strings(text):
    assert candidates(text) == [text]


@pytest.mark.parametrize(
    "text", ['"open', "k:", ":v", "ab", "a..b:1", " ".join(f"w{i}xx" for i in range(9))]
)
def test_malformed_searches_raise_a_readable_error(text):
    with pytest.raises(SearchError):
        Search.parse(text)


# Each row's payload, under a label (stored as the run's function and the event's type).
ROWS = {
    "contains": {"contains": 1},
    "a.in": {"a": {"in": 12}},
    "regex": {"regex": "["},
    "isnull": {"x": {"isnull": ".."}},
    "has_key": {"has_key": "x"},
    "order__id": {"order__id": 1},
    "order.id": {"order": {"id": 1}},
    "zero": {"0": "zero", "items": ["zero"]},
    "minus": {"-1": "neg", "items": ["neg"]},
    "underscore": {"1_000": "x"},
    "nan": {"order_id": "NaN"},
    "inf": {"order_id": "Infinity"},
    "-inf": {"order_id": "-Infinity"},
    "1e999": {"order_id": "1e999"},
    "int": {"order_id": 42},
    "str": {"order_id": "42"},
    "big": {"big": 123456789012345678901234567890},
    "null": {"maybe": None},
}
# A search and the labels of the rows it finds: a key is only ever an object's key.
SEARCHES = {
    "contains:1": ["contains"],
    "a.in:12": ["a.in"],
    "regex:[": ["regex"],
    "x.isnull:..": ["isnull"],
    "has_key:x": ["has_key"],
    "order__id:1": ["order__id"],
    "order.id:1": ["order.id"],
    "0:zero": ["zero"],
    "items.0:zero": [],
    "-1:neg": ["minus"],
    "1_000:x": ["underscore"],
    "order_id:NaN": ["nan"],
    "order_id:Infinity": ["inf"],
    "order_id:-Infinity": ["-inf"],
    "order_id:1e999": ["1e999"],
    "order_id:42": ["int", "str"],
    "big:123456789012345678901234567890": ["big"],
    "maybe:null": ["null"],
}


def load_rows() -> None:
    now = timezone.now()
    for label, payload in ROWS.items():
        event = Event.objects.create(
            type=f"t:{label}", data=payload, stream_id=Event().id, created_at=now
        )
        Run.objects.create(
            function=label,
            trigger="event",
            event=event,
            input=payload,
            stream_id=event.stream_id,
            created_at=now,
        )


def found(client, path: str, query: str) -> tuple[int, list[str]]:
    """The status and the labels of the rows a list page shows for a search."""
    response = client.get(path, {"q": query})
    page = response.content.decode()
    if path == "/":
        ids = re.findall(r'id="run-([0-9a-f-]{36})"', page)
        labels = list(Run.objects.filter(id__in=ids).values_list("function", flat=True))
    else:
        ids = re.findall(r'id="event-([0-9a-f-]{36})"', page)
        labels = [t[2:] for t in Event.objects.filter(id__in=ids).values_list("type", flat=True)]
    return response.status_code, sorted(labels)


PATHS = ["/", "/events/"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("query", list(SEARCHES))
def test_any_key_text_is_just_a_key_on_postgresql(alice, client, db, path, query):
    load_rows()
    client.raise_request_exception = False  # a 500 is a status to compare, not an exception
    client.force_login(alice)

    assert found(client, path, query) == (200, sorted(SEARCHES[query]))


# Run in a subprocess on a fresh SQLite database: every search on both lists, as JSON.
SQLITE_SCRIPT = """
import json
import django
django.setup()
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from tests.test_search import PATHS, SEARCHES, found, load_rows
call_command("migrate", verbosity=0)
load_rows()
client = Client(raise_request_exception=False)
client.force_login(User.objects.create_superuser("alice"))  # the pages need view_run
print(json.dumps({path: {q: found(client, path, q) for q in SEARCHES} for path in PATHS}))
"""


@pytest.fixture(scope="module")
def sqlite_results(tmp_path_factory) -> dict:
    data_dir = tmp_path_factory.mktemp("sqlite-search")
    done = on_sqlite(["-c", SQLITE_SCRIPT], data_dir, timeout=60, ALLOWED_HOSTS="testserver")
    assert done.returncode == 0, done.stderr
    assert (data_dir / "hot.sqlite3").exists()  # it did run on SQLite
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("query", list(SEARCHES))
def test_any_key_text_is_just_a_key_on_sqlite(sqlite_results, path, query):
    assert sqlite_results[path][query] == [200, sorted(SEARCHES[query])]
