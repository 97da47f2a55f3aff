"""A run chain's outcome: a failed attempt that was retried does not need attention; the latest
attempt of a chain that ended failed does, and every failed attempt stays one filter away."""

import importlib
import re

import pytest
from django.db import IntegrityError, connection, transaction

from hotapp.models import Run, RunStatus
from runtime import InvalidTransition, executor, retry_run, send, start
from tests import task_handlers
from tests.conftest import drain

pytestmark = pytest.mark.django_db


def shown_ids(client, query: str) -> set[str]:
    page = client.get(f"/?{query}").content.decode()
    return set(re.findall(r'id="run-([0-9a-f-]{36})"', page))


def ids(*runs: Run) -> set[str]:
    return {str(run.id) for run in runs}


@pytest.fixture
def recovered():
    """on_order_created: attempt 1 fails, attempt 2 (its automatic retry) succeeds."""
    send("order:created", {"order_id": 7, "items": []})
    drain()
    return Run.objects.get(function__endswith="on_order_created", attempt=1)


@pytest.fixture
def exhausted():
    """always_fails: 3 attempts, all failed, no retry left."""
    send("test:always-fails", {"n": 1})
    drain()
    return Run.objects.filter(function__endswith="always_fails").order_by("attempt")


def test_a_failed_attempt_whose_retry_succeeded_does_not_need_attention(alice_client, recovered):
    assert recovered.status == RunStatus.FAILED and recovered.is_superseded
    assert not recovered.needs_attention
    assert not Run.objects.needs_attention().exists()
    assert shown_ids(alice_client, "status=failed") == set()
    # Nothing is hidden: every failed attempt is one option away.
    assert shown_ids(alice_client, "status=failed_attempt") == ids(recovered)


def test_a_chain_whose_last_attempt_failed_with_no_retry_left_needs_attention(
    alice_client, exhausted
):
    first, second, last = exhausted
    assert [r.is_superseded for r in exhausted] == [True, True, False]
    assert list(Run.objects.needs_attention()) == [last]
    assert shown_ids(alice_client, "status=failed") == ids(last)
    assert shown_ids(alice_client, "status=failed_attempt") == ids(first, second, last)


def test_a_pending_retry_does_not_need_attention(alice_client):
    send("test:always-fails", {"n": 1})
    first = Run.objects.get()
    executor.execute(first.id)
    first.refresh_from_db()

    assert first.status == RunStatus.PENDING_RETRY and not first.is_superseded
    assert shown_ids(alice_client, "status=failed") == set()
    assert shown_ids(alice_client, "status=pending_retry") == ids(first)


def test_other_statuses_combine_with_needs_attention(alice_client, recovered, exhausted):
    succeeded = Run.objects.filter(status=RunStatus.SUCCEEDED)

    assert shown_ids(alice_client, "status=failed&status=succeeded") == ids(
        exhausted.last(), *succeeded
    )


def test_a_manual_retry_marks_the_old_attempt_superseded(alice_client):
    send("test:fixed-by-hand", {"order_id": 3})
    drain()
    failed = Run.objects.get()
    assert failed.needs_attention
    assert shown_ids(alice_client, "status=failed") == ids(failed)

    second = retry_run(failed.id)
    failed.refresh_from_db()

    assert failed.is_superseded and second.origin_run_id == failed.id
    assert shown_ids(alice_client, "status=failed") == set()
    with pytest.raises(InvalidTransition, match="already retried"):
        retry_run(failed.id)
    drain()
    assert Run.objects.get(id=second.id).status == RunStatus.SUCCEEDED
    assert not Run.objects.needs_attention().exists()


def test_marking_superseded_stamps_the_row_so_live_lists_drop_it():
    send("test:fixed-by-hand", {"order_id": 3})
    drain()
    failed = Run.objects.get()

    retry_run(failed.id)

    assert Run.objects.get(id=failed.id).updated_at > failed.updated_at


def test_a_retried_task_attempt_is_superseded_by_the_next_one(tmp_path):
    start(task_handlers.fails_once_midway, {"log": str(tmp_path / "log")})
    drain()

    first, second = Run.objects.order_by("attempt")
    assert first.status == RunStatus.FAILED and first.is_superseded
    assert second.status == RunStatus.SUCCEEDED
    assert not Run.objects.needs_attention().exists()


def test_only_a_failed_attempt_can_be_superseded(recovered):
    succeeded = Run.objects.get(origin_run=recovered)

    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.filter(id=succeeded.id).update(is_superseded=True)


def test_the_migration_marks_every_retried_attempt_of_existing_chains(recovered, exhausted):
    Run.objects.update(is_superseded=False)  # as the column starts out

    backfill = importlib.import_module("hotapp.migrations.0011_chain_outcome").BACKFILL
    with connection.cursor() as cursor:
        cursor.execute(backfill)

    superseded = set(Run.objects.filter(is_superseded=True).values_list("id", flat=True))
    assert superseded == {recovered.id, *(r.id for r in exhausted[:2])}


def test_a_recovered_attempt_says_so_on_its_page_and_in_the_list(alice_client, recovered):
    second = Run.objects.get(origin_run=recovered)

    page = alice_client.get(f"/runs/{recovered.id}/").content.decode()
    row = re.search(
        rf'<tr id="run-{recovered.id}".*?</tr>',
        alice_client.get("/?status=failed_attempt").content.decode(),
        re.S,
    ).group(0)

    assert re.search(rf'Recovered: <a href="/runs/{second.id}/">attempt 2</a> succeeded', page)
    assert "needs attention</span>" not in page
    assert ">Retry</button>" not in page
    assert ">retried</span>" in row


def test_the_latest_failed_attempt_says_it_needs_attention(alice_client, exhausted):
    first, last = exhausted.first(), exhausted.last()

    last_page = alice_client.get(f"/runs/{last.id}/").content.decode()
    first_page = alice_client.get(f"/runs/{first.id}/").content.decode()

    assert "needs attention</span>" in last_page and ">Retry</button>" in last_page
    assert re.search(
        rf'Retried: <a href="/runs/{last.id}/">attempt 3</a> failed too and needs attention',
        first_page,
    )


def test_the_status_filter_labels_say_needs_attention_and_failed_attempts(alice_client):
    page = alice_client.get("/").content.decode()

    assert re.search(r'value="failed"\s*>\s*Needs attention</label>', page)
    assert re.search(r'value="failed_attempt"\s*>\s*Failed attempts \(all\)</label>', page)
    checked = alice_client.get("/?status=failed_attempt").content.decode()
    assert re.search(r'value="failed_attempt" checked>', checked)
