"""Field masking: a secret in a payload is never stored in a trace, and never shown by a page,
the API or the events list, while the engine keeps the real input for retries."""

import json

import pytest
from django.db import connection

from hotapp.masking import MASKED, is_masked_key, mask, mask_json_text
from hotapp.models import Event, Run
from runtime import send
from tests.conftest import drain

SECRETS = ("hunter2-SECRET", "4111-1111-1111-1111", "tok-RESULT-999", "cvv-777")
PAYLOAD = {
    "customer": {"name": "alice", "password": "hunter2-SECRET"},
    "payment": {"amount": 12, "card_number": "4111-1111-1111-1111", "CVV": "cvv-777"},
}


@pytest.fixture
def checkout(db):
    send("trace:checkout", PAYLOAD)
    drain()
    return Run.objects.get(event_type="trace:checkout")


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "PASSWORD",
        "cardNumber",
        "credit-card",
        "X-Api-Key",
        "apikey",
        "access_token",
        "Authorization",
        "ssn",
        "client_secret",
    ],
)
def test_secret_looking_keys_are_masked_whatever_their_case_or_separators(key):
    assert is_masked_key(key)


@pytest.mark.parametrize("key", ["discard", "cardinality", "classname", "tokens_used", "user"])
def test_keys_that_only_contain_the_letters_of_a_mask_word_are_not_masked(key):
    assert not is_masked_key(key)


def test_nested_values_under_a_masked_key_are_replaced_and_the_rest_is_kept():
    value = {"a": 1, "user": {"password": "x", "cards": [{"card_number": "4111", "n": 2}]}}

    assert mask(value) == {
        "a": 1,
        "user": {"password": MASKED, "cards": [{"card_number": MASKED, "n": 2}]},
    }
    assert value["user"]["password"] == "x"  # a copy: the caller's value is untouched


def test_a_preview_cut_anywhere_is_masked_up_to_its_end():
    text = (
        '{"amount": 5, "password": "hun\\"ter2", "card": {"n": "4111", "x": [1, 2]}, "token": "abc'
    )

    assert mask_json_text(text) == (
        f'{{"amount": 5, "password": "{MASKED}", "card": "{MASKED}", "token": "{MASKED}"'
    )


def test_the_mask_keys_setting_replaces_the_default_list(settings):
    settings.HOT = {**settings.HOT, "MASK_KEYS": ["pin"]}

    assert is_masked_key("card_pin") and not is_masked_key("password")
    assert mask({"pin": 1234, "password": "x"}) == {"pin": MASKED, "password": "x"}


def test_a_password_in_an_event_payload_never_reaches_the_stored_trace(checkout):
    with connection.cursor() as cursor:
        cursor.execute("SELECT data::text FROM hotapp_runtrace WHERE run_id = %s", [checkout.id])
        [stored] = cursor.fetchone()

    assert_no_secret(stored)
    assert MASKED in stored
    assert "'amount': 12" in stored  # the rest of the values are still there


def test_the_stored_input_keeps_the_secret_so_a_retry_calls_the_handler_with_it(checkout):
    assert Run.objects.get(id=checkout.id).input == PAYLOAD


def test_the_run_page_and_its_trace_show_no_secret(alice_client, checkout):
    page = alice_client.get(f"/runs/{checkout.id}/").content.decode()
    trace = alice_client.get(f"/runs/{checkout.id}/trace.json").content.decode()

    assert_no_secret(page)
    assert_no_secret(trace)
    assert "alice" in page and MASKED in page


def test_the_event_page_and_the_events_list_show_no_secret(alice_client, checkout):
    event_page = alice_client.get(f"/events/{checkout.event_id}/").content.decode()
    events_list = alice_client.get("/events/").content.decode()

    assert_no_secret(event_page)
    assert_no_secret(events_list)
    assert MASKED in event_page and MASKED in events_list


def test_the_api_shows_no_secret_in_runs_or_events(alice_client, checkout):
    responses = [
        alice_client.get(f"/api/runs/{checkout.id}/"),
        alice_client.get("/api/runs/?include=payloads"),
        alice_client.get(f"/api/events/{checkout.event_id}/"),
        alice_client.get("/api/events/?include=payloads"),
    ]

    for response in responses:
        assert response.status_code == 200
        assert_no_secret(response.content.decode())
    assert responses[0].json()["input"]["customer"] == {"name": "alice", "password": MASKED}


def test_a_masked_field_cannot_be_searched(alice_client, checkout):
    page = alice_client.get("/", {"q": "customer.password:hunter2-SECRET"}).content.decode()
    api = alice_client.get("/api/runs/", {"q": "password:hunter2-SECRET"})

    assert "is a masked field" in page
    assert api.status_code == 400


def test_a_task_page_masks_its_input_checkpoints_and_messages(alice_client, db):
    from hotapp.models import Task, TaskCheckpoint, TaskMessage

    task = Task.objects.create(
        name="tests.task_handlers.x", input={"api_key": "k-SECRET-1"}, stream_id=Event().id
    )
    TaskCheckpoint.objects.create(task=task, state={"token": "k-SECRET-2"})
    TaskMessage.objects.create(task=task, direction="in", body={"password": "k-SECRET-3"})

    page = alice_client.get(f"/tasks/{task.id}/").content.decode()

    assert "k-SECRET" not in page
    assert json.dumps(MASKED)[1:-1] in page or MASKED in page
