"""`python manage.py hot send` and `hot sweep` from the shell."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from hotapp.models import Event, Run

pytestmark = pytest.mark.django_db


def hot(*args: str) -> str:
    out = StringIO()
    call_command("hot", *args, stdout=out)
    return out.getvalue().strip()


def test_hot_send_stores_the_event_and_prints_its_id():
    event_id = hot("send", "order:created", '{"order_id": 9, "items": []}')

    event = Event.objects.get(id=event_id)
    assert event.data == {"order_id": 9, "items": []}
    assert Run.objects.filter(event=event).count() == 1


def test_hot_send_refuses_malformed_json_with_a_clear_message():
    with pytest.raises(CommandError, match="not valid JSON"):
        hot("send", "order:created", "{order_id: 9}")

    assert not Event.objects.exists()


def test_hot_send_refuses_a_malformed_event_type():
    with pytest.raises(CommandError, match="malformed"):
        hot("send", "order created", "{}")


def test_hot_sweep_prints_what_it_did():
    assert json.loads(hot("sweep")) == {
        "requeued": 0,
        "promoted": 0,
        "recovered": 0,
        "force_cancelled": 0,
        "timed_out": 0,
        "settled": 0,
    }


def test_hot_schedules_lists_and_pauses_schedules():
    listing = hot("schedules")
    assert "tests.task_handlers.every_ten_seconds  'every 10 seconds' (every 10 seconds)" in listing

    assert hot("pause", "tests.task_handlers.every_ten_seconds").endswith("paused")
    assert "every_ten_seconds  'every 10 seconds' (every 10 seconds)  paused" in hot("schedules")
    with pytest.raises(CommandError, match="No schedule named"):
        hot("resume", "no.such.schedule")
