"""`python manage.py hot …` from the shell: send, sweep, schedules, runs, run actions, bulk."""

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from hotapp.models import BulkOperation, Event, Run, Schedule
from runtime import bulk, on_schedule, registry
from tests.conftest import ROOT, subprocess_database_url

pytestmark = pytest.mark.django_db


def hot(*args: str, stdin: str | None = None, stderr: StringIO | None = None) -> str:
    out = StringIO()
    extra = {"stdin": StringIO(stdin)} if stdin is not None else {}
    call_command("hot", *args, stdout=out, stderr=stderr or StringIO(), **extra)
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
        "released": 0,
        "promoted": 0,
        "recovered": 0,
        "force_cancelled": 0,
        "timed_out": 0,
        "settled": 0,
        "bulk_resumed": 0,
        "alerts_rung": 0,
    }


def test_hot_schedules_lists_and_pauses_schedules():
    listing = hot("schedules")
    assert "tests.task_handlers.every_ten_seconds  'every 10 seconds' (every 10 seconds)" in listing

    assert hot("pause", "tests.task_handlers.every_ten_seconds").endswith("paused")
    assert "every_ten_seconds  'every 10 seconds' (every 10 seconds)  paused" in hot("schedules")
    with pytest.raises(CommandError, match="No schedule named"):
        hot("resume", "no.such.schedule")


def test_hot_send_reads_the_payload_from_a_file(tmp_path):
    payload = tmp_path / "order.json"
    payload.write_text('{"order_id": 12, "items": []}')

    event = Event.objects.get(id=hot("send", "order:created", f"@{payload}"))

    assert event.data == {"order_id": 12, "items": []}
    with pytest.raises(CommandError, match="Cannot read .*missing.json: No such file"):
        hot("send", "order:created", f"@{tmp_path / 'missing.json'}")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(CommandError, match="bad.json is not valid JSON"):
        hot("send", "order:created", f"@{tmp_path / 'bad.json'}")


def test_hot_send_reads_the_payload_from_stdin():
    event_id = hot("send", "order:created", "-", stdin='{"order_id": 13, "items": []}\n')

    assert Event.objects.get(id=event_id).data == {"order_id": 13, "items": []}


def test_hot_send_of_a_type_nobody_subscribes_to_warns_loudly_and_still_stores_it():
    errors = StringIO()

    event_id = hot("send", "nobody:listens", '{"a": 1}', stderr=errors)

    assert "WARNING: no handler subscribes to 'nobody:listens' in this process" in (
        errors.getvalue()
    )
    assert "Is HOT_HANDLER_MODULES set?" in errors.getvalue()
    event = Event.objects.get(id=event_id)
    assert (event.is_handled, event.data) == (False, {"a": 1})
    quiet = StringIO()
    hot("send", "order:created", '{"order_id": 1, "items": []}', stderr=quiet)
    assert quiet.getvalue() == ""


def test_hot_send_from_a_real_shell_pipes_stdin_and_warns_on_stderr(transactional_db):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TEST_DATABASE_URL": subprocess_database_url(),
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "hot", "send", "nobody:listens", "-"],
        input='{"piped": true}',
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert Event.objects.get(id=done.stdout.strip()).data == {"piped": True}
    assert "WARNING: no handler subscribes to 'nobody:listens'" in done.stderr


def test_hot_pause_and_resume_take_the_short_name_the_pages_show():
    assert hot("pause", "every_ten_seconds") == "tests.task_handlers.every_ten_seconds: paused"
    assert Schedule.objects.get(name="tests.task_handlers.every_ten_seconds").is_paused

    assert hot("resume", "every_ten_seconds").endswith("every_ten_seconds: resumed")
    assert not Schedule.objects.get(name="tests.task_handlers.every_ten_seconds").is_paused


@pytest.fixture
def a_second_every_ten_seconds():
    on_schedule("every 10 seconds", name="tests.elsewhere.every_ten_seconds")(lambda tick: None)
    yield
    registry.unregister("tests.elsewhere.every_ten_seconds")


def test_an_ambiguous_short_schedule_name_is_refused_listing_the_candidates(
    a_second_every_ten_seconds,
):
    with pytest.raises(CommandError) as refused:
        hot("pause", "every_ten_seconds")

    assert str(refused.value) == (
        "Several schedules are called 'every_ten_seconds': tests.elsewhere.every_ten_seconds, "
        "tests.task_handlers.every_ten_seconds; give the full name"
    )
    assert not Schedule.objects.filter(is_paused=True).exists()
    assert hot("pause", "tests.elsewhere.every_ten_seconds").endswith("paused")


def test_hot_runs_lists_runs_newest_first_as_a_table(make_runs):
    make_runs(2)
    make_runs(1, status="succeeded")

    lines = hot("runs").splitlines()

    assert lines[0].split() == ["ID", "STATUS", "FUNCTION", "ATTEMPT", "CREATED", "DURATION"]
    rows = [line.split() for line in lines[1:]]
    assert [row[0] for row in rows] == [
        str(i) for i in Run.objects.order_by("-created_at", "-id").values_list("id", flat=True)
    ]
    assert [row[1] for row in rows] == ["succeeded", "failed", "failed"]
    assert {row[2] for row in rows} == {"downstream"}
    assert all(row[6] == "UTC" for row in rows)  # created_at says its zone


def test_hot_runs_takes_the_runs_pages_filters_and_prints_json_lines(make_runs):
    make_runs(3)
    make_runs(2, status="succeeded")
    Run.objects.filter(input__n=1, status="failed").update(function="tests.handlers.other")

    failed = [json.loads(line) for line in hot("runs", "--status", "failed", "--json").split("\n")]
    by_short_name = hot("runs", "--function", "downstream", "--status", "failed", "--json")
    searched = hot("runs", "--q", "n:1", "--json").splitlines()

    assert [row["status"] for row in failed] == ["failed"] * 3
    assert {row["function"] for row in failed} == {
        "tests.handlers.downstream",
        "tests.handlers.other",
    }
    assert len(by_short_name.splitlines()) == 2
    assert len(searched) == 2
    assert hot("runs", "--period", "1h", "--status", "failed", "--json").count("\n") == 2
    assert hot("runs", "--until", "2001-01-01") == "No runs match."


def test_hot_runs_pages_by_the_printed_cursor(make_runs):
    make_runs(5)
    errors = StringIO()

    first = hot("runs", "--limit", "3", "--json", stderr=errors).splitlines()
    cursor = errors.getvalue().split("--after ")[1].strip()
    rest = hot("runs", "--limit", "3", "--json", "--after", cursor).splitlines()

    ids = [json.loads(line)["id"] for line in first + rest]
    assert ids == [str(i) for i in Run.objects.order_by("-created_at").values_list("id", flat=True)]


def test_hot_runs_refuses_bad_filters_with_the_pages_messages():
    with pytest.raises(CommandError, match="Since: Enter a valid date/time"):
        hot("runs", "--since", "last tuesday")
    with pytest.raises(CommandError, match="use a number and s, m, h, d or w"):
        hot("runs", "--period", "a while")
    with pytest.raises(CommandError, match="not both"):
        hot("runs", "--period", "1h", "--since", "2026-01-01")


def test_hot_retry_rerun_and_cancel_act_on_one_run(make_runs):
    [failed] = make_runs(1)
    [queued] = make_runs(1, status="queued")

    retried_id, status, *_ = hot("retry", str(failed.id)).split()
    rerun_id, rerun_status, *_ = hot("rerun", str(failed.id)).split()

    retried = Run.objects.get(id=retried_id)
    assert (status, retried.attempt, retried.origin_run_id) == ("queued", 2, failed.id)
    assert rerun_status == "queued" and Run.objects.get(id=rerun_id).rerun_of_id == failed.id
    assert hot("cancel", str(queued.id)) == f"{queued.id} cancelled  (cancelled)"


def test_hot_retry_of_an_unfit_or_unknown_run_fails_clearly(make_runs):
    [succeeded] = make_runs(1, status="succeeded")

    with pytest.raises(CommandError, match="Only failed runs can be retried; this one is succ"):
        hot("retry", str(succeeded.id))
    with pytest.raises(CommandError, match="only unfinished runs can be cancelled"):
        hot("cancel", str(succeeded.id))
    with pytest.raises(CommandError, match="No run has id"):
        hot("rerun", "0190a000-0000-7000-8000-000000000000")
    with pytest.raises(CommandError, match="is not a run id"):
        hot("retry", "42")


def test_hot_bulk_dry_run_counts_and_changes_nothing(make_runs):
    make_runs(3)
    make_runs(2, status="queued")

    out = hot("bulk", "retry", "--status", "failed", "--dry-run")

    assert out.splitlines() == [
        "This will retry 3 failed runs matching: status=failed.",
        "Dry run: nothing was changed.",
    ]
    assert not Run.objects.filter(attempt=2).exists()
    assert not BulkOperation.objects.exists()


def test_hot_bulk_asks_first_and_does_nothing_unless_confirmed(make_runs):
    make_runs(3)

    with pytest.raises(CommandError, match="Not confirmed; nothing was changed"):
        hot("bulk", "retry", stdin="n\n")
    with pytest.raises(CommandError, match="Not confirmed"):
        hot("bulk", "retry", stdin="")  # no terminal to answer

    assert not Run.objects.filter(attempt=2).exists()
    out = hot("bulk", "retry", stdin="y\n")
    assert "Proceed? [y/N]" in out
    assert Run.objects.filter(attempt=2).count() == 3


def test_hot_bulk_yes_does_it_in_batches_printing_progress(make_runs):
    make_runs(450)
    make_runs(5, status="queued")
    assert bulk.BATCH_SIZE == 200

    out = hot("bulk", "cancel", "--function", "downstream", "--yes").splitlines()

    assert out[0] == (
        "This will cancel 5 unfinished runs matching: function=tests.handlers.downstream."
    )
    assert out[1] == "5/5: 5 cancelled, 0 skipped"
    operation = BulkOperation.objects.get()
    assert out[2] == (
        f"Operation {operation.id} done: 5 cancelled, 0 skipped (no longer fitting), 0 failed."
    )
    assert (operation.via, operation.kind, operation.done) == ("cli", "cancel", 5)
    out = hot("bulk", "retry", "--yes").splitlines()
    assert out[1:4] == [
        "200/450: 200 retried, 0 skipped",
        "400/450: 400 retried, 0 skipped",
        "450/450: 450 retried, 0 skipped",
    ]
