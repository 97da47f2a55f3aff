"""The lineage graph (hotapp/lineage.py): a workflow, and where a rerun came from."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hotapp.lineage import stream_graph
from hotapp.models import Event, Run
from runtime import rerun, send
from tests.conftest import drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def paid():
    """The order workflow's second step, after the whole workflow ran."""
    send("order:created", {"order_id": 5, "items": []})
    drain()
    return Run.objects.get(function__endswith="on_order_paid")


def test_a_reruns_graph_shows_the_event_it_keeps_and_the_run_it_repeats(paid):
    again = rerun(paid.id)
    graph = stream_graph(again.stream_id, again.id)

    nodes = {node.obj.id: node for node in graph.nodes}
    assert set(nodes) == {paid.event_id, paid.id, again.id}
    assert nodes[paid.event_id].is_external and nodes[paid.id].is_external
    assert not nodes[again.id].is_external and nodes[again.id].is_focus
    edges = {(e.source.obj.id, e.target.obj.id, e.kind) for e in graph.edges}
    assert edges == {
        (paid.event_id, paid.id, "flow"),
        (paid.event_id, again.id, "flow"),
        (paid.id, again.id, "rerun"),
    }


def test_a_reruns_page_links_to_the_event_and_to_the_run_it_repeats(alice_client, paid):
    again = rerun(paid.id)
    page = alice_client.get(f"/runs/{again.id}/").content.decode()

    assert f'href="/events/{paid.event_id}/" class="node event external"' in page
    assert f'href="/runs/{paid.id}/" class="node run status-succeeded external"' in page
    assert 'class="edge rerun"' in page and ">rerun</text>" in page


def test_the_graph_does_not_read_payloads(paid):
    with CaptureQueriesContext(connection) as queries:
        stream_graph(paid.stream_id, paid.id)

    assert Event.objects.filter(stream_id=paid.stream_id).count() == 3
    assert not any('"hotapp_event"."data"' in q["sql"] for q in queries)
    assert not any('"hotapp_run"."input"' in q["sql"] for q in queries)
