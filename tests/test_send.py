"""send(): what is written, and what is refused with nothing written."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from hotapp.models import Event, Run, RunStatus, Trigger
from runtime import InvalidEventType, PayloadError, send

pytestmark = pytest.mark.django_db


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_event_and_its_runs_are_one_statement():
    with CaptureQueriesContext(connection) as queries:
        event_id = send("test:fanout", {"n": 1})

    assert len(queries) == 1 and queries[0]["sql"].startswith("WITH w0 AS (INSERT")
    event = Event.objects.get(id=event_id)
    assert event.data == {"n": 1} and event.stream_id == event.id and event.is_handled
    runs = Run.objects.filter(event=event)
    assert sorted(run.function.rsplit(".", 1)[1] for run in runs) == [
        "fanout_first",
        "fanout_second",
    ]
    assert [(run.status, run.input, run.stream_id) for run in runs] == [
        (RunStatus.QUEUED, {"n": 1}, event.id)
    ] * 2


def test_send_persists_the_event_and_one_queued_run_per_handler():
    event_id = send("order:created", {"order_id": 1, "items": []})

    event = Event.objects.get(id=event_id)
    assert event.type == "order:created"
    assert event.data == {"order_id": 1, "items": []}
    assert event.is_handled
    assert event.source_run is None
    assert event.stream_id == event.id  # an event sent from outside a run starts a stream
    [run] = Run.objects.filter(event=event)
    assert run.status == RunStatus.QUEUED
    assert run.trigger == Trigger.EVENT
    assert run.function == "hotapp.demo.handlers.on_order_created"
    assert run.input == event.data
    assert run.attempt == 1 and run.origin_run is None
    assert run.stream_id == event.stream_id
    assert run.retry_policy == {
        "attempts": 3,
        "delay_ms": 1000,
        "backoff": "fixed",
        "max_delay_ms": 300000,
        "jitter": False,
    }


def test_fan_out_gives_each_subscribed_handler_its_own_run():
    event_id = send("test:fanout")

    functions = sorted(Run.objects.filter(event_id=event_id).values_list("function", flat=True))
    assert functions == ["tests.handlers.fanout_first", "tests.handlers.fanout_second"]


def test_an_event_nobody_handles_is_stored_and_marked_unhandled():
    event_id = send("nobody:listens", {"x": 1})

    event = Event.objects.get(id=event_id)
    assert not event.is_handled
    assert not Run.objects.filter(event=event).exists()


@pytest.mark.django_db(transaction=True)
def test_send_inside_a_rolled_back_transaction_leaves_no_event_and_no_run():
    with pytest.raises(RuntimeError), transaction.atomic():
        send("order:created", {"order_id": 2})
        assert Event.objects.count() == 1  # visible inside the caller's transaction
        raise RuntimeError("the caller's transaction fails")

    assert Event.objects.count() == 0
    assert Run.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_send_inside_a_committed_transaction_commits_with_it():
    with transaction.atomic():
        event_id = send("order:created", {"order_id": 3})

    assert Run.objects.filter(event_id=event_id, status=RunStatus.QUEUED).count() == 1


@pytest.mark.parametrize(
    "bad_type", ["", "order created", "order::created", ":x", "a" * 201, None, 7]
)
def test_a_malformed_event_type_is_refused_with_nothing_written(bad_type):
    with pytest.raises(InvalidEventType):
        send(bad_type, {"x": 1})

    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"when": object()}, "JSON-serializable"),
        ({"ratio": float("nan")}, "JSON-serializable"),
        ({1, 2}, "JSON-serializable"),
        ({"text": "nul \x00 byte"}, "NUL"),
        ({"nul \x00 key": 1}, "NUL"),
        ({"text": "lone \ud800 surrogate"}, "surrogate"),
        ({"lone \udfff key": 1}, "surrogate"),
        (nested(5000), "nested"),
        (nested(300), "nested"),
    ],
)
def test_a_payload_that_is_not_json_is_refused_with_nothing_written(payload, message):
    with pytest.raises(PayloadError, match=message):
        send("order:created", payload)

    assert Event.objects.count() == 0
    assert Run.objects.count() == 0


def test_an_oversized_payload_is_refused_with_the_limit_in_the_message(settings):
    settings.HOT = {**settings.HOT, "MAX_PAYLOAD_BYTES": 1000}

    with pytest.raises(PayloadError, match="limit is 1000"):
        send("order:created", {"blob": "x" * 2000})

    assert Event.objects.count() == 0


def test_the_error_names_the_event_type():
    with pytest.raises(PayloadError, match="'order:created'"):
        send("order:created", {"when": object()})


def test_a_refused_payload_leaves_the_callers_transaction_usable():
    with transaction.atomic():
        with pytest.raises(PayloadError):
            send("order:created", {"text": "lone \ud800 surrogate"})
        event_id = send("order:created", {"order_id": 4})

    assert Event.objects.filter(id=event_id).exists()


def test_text_that_only_looks_like_an_escaped_nul_is_accepted():
    event_id = send("order:created", {"path": "C:\\u0000", "emoji": "\U0001f600"})

    assert Event.objects.get(id=event_id).data == {"path": "C:\\u0000", "emoji": "\U0001f600"}


def test_a_payload_nested_as_deep_as_allowed_is_accepted():
    event_id = send("order:created", {"tree": nested(198)})  # 200 levels with the outer two

    assert Event.objects.get(id=event_id).data == {"tree": nested(198)}
