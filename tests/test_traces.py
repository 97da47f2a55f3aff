"""Execution traces: recorded without user code, bounded, masked, per thread, kept on failure."""

import json
import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hotapp.models import Run, RunStatus, RunTrace
from runtime import cancel_run, send
from runtime import trace_recorder as tracer_module
from runtime.trace_recorder import Tracer, UserCode
from tests import trace_handlers
from tests.conftest import drain, wait_for

pytestmark = pytest.mark.django_db


def run_of(event_type: str, data: dict | None = None) -> Run:
    send(event_type, data or {})
    drain()
    return Run.objects.select_related("trace").get(event_type=event_type)


def by_name(run: Run) -> dict[str, list[dict]]:
    spans: dict[str, list[dict]] = {}
    for span in run.trace.data["spans"]:
        spans.setdefault(span["name"], []).append(span)
    return spans


def test_a_nested_handler_records_a_tree_of_calls_with_values_and_timing():
    run = run_of("trace:nested", {"items": [{"price": 10}, {"price": 2.5}]})

    [root] = run.trace.tree()
    assert root["name"] == "nested"
    assert root["module"] == "tests.trace_handlers"
    assert root["file"].endswith("tests/trace_handlers.py")
    assert dict(root["args"])["event"].startswith("Event(")
    assert root["result"] == "{'total': 15.0}"
    [price] = root["children"]
    assert price["name"] == "price"
    assert dict(price["args"]) == {"items": "[{'price': 10}, {'price': 2.5}]"}
    assert price["values"] == [["subtotal", "12.5"]]
    assert price["result"] == "15.0"
    [add_tax] = price["children"]
    assert add_tax["args"] == [["amount", "12.5"], ["rate", "0.2"]]  # in signature order
    # Children start after and end before their parents.
    for parent, child in ((root, price), (price, add_tax)):
        assert parent["start_us"] <= child["start_us"]
        assert (
            child["start_us"] + child["duration_us"] <= parent["start_us"] + parent["duration_us"]
        )
    assert run.trace.span_count == 3 and not run.trace.is_truncated


def test_the_standard_library_and_the_runtime_are_not_recorded():
    run = run_of("trace:nested", {"items": []})

    modules = {span["module"] for span in run.trace.data["spans"]}
    assert modules == {"tests.trace_handlers"}


def test_the_standard_library_and_every_kind_of_site_packages_are_not_recorded():
    """json (the standard library in Python), Django's slugify (the virtualenv's
    site-packages), Debian's dist-packages and the user's site-packages."""
    run = run_of("trace:libraries")

    [root] = run.trace.tree()
    assert root["name"] == "libraries"
    assert [(c["name"], c["module"]) for c in root["children"]] == [
        ("helper", "tests.vendored"),
        ("add_tax", "tests.trace_handlers"),
    ]


def test_an_exception_caught_inside_the_handler_is_recorded_on_its_call():
    run = run_of("trace:caught")

    spans = by_name(run)
    failed, succeeded = spans["risky"]
    assert failed["error"] == {"type": "ValueError", "message": "ValueError('negative: -1')"}
    assert "result" not in failed
    assert succeeded["result"] == "2"
    assert spans["caught"][0]["result"] == "2"
    assert "error" not in spans["caught"][0]


def test_a_failed_run_keeps_its_trace_with_the_exception_path():
    run = run_of("trace:fails", {"items": [{"price": 1}]})

    assert run.status == RunStatus.FAILED
    [root] = run.trace.tree()
    assert root["error"]["type"] == "ValueError"
    assert [c["name"] for c in root["children"]] == ["price", "risky"]
    assert root["children"][1]["error"]["message"] == "ValueError('negative: -5')"
    assert root["children"][0]["result"] == "1.2"


def test_a_generator_is_one_span_with_its_yields_and_the_calls_made_inside_it():
    run = run_of("trace:generator")

    [root] = run.trace.tree()
    assert root["result"] == "[3, 2, 1]"
    [gen] = root["children"]
    assert gen["name"] == "countdown" and gen["kind"] == "generator"
    assert dict(gen["args"]) == {"n": "3"}
    assert gen["yields"] == ["3", "2", "1"]
    assert gen["result"] == "'done'"
    assert [c["name"] for c in gen["children"]] == ["add_tax"] * 3


def test_a_recursive_function_records_every_call_at_its_depth():
    run = run_of("trace:recursive", {"n": 5})

    spans = by_name(run)
    assert len(spans["fib"]) == 15  # fib(5) makes 15 calls
    [root] = run.trace.tree()
    [top] = root["children"]
    assert dict(top["args"]) == {"n": "5"} and top["result"] == "5"
    depth, node = 0, top
    while node["children"]:
        node, depth = node["children"][0], depth + 1
    assert depth == 4 and dict(node["args"]) == {"n": "1"}


def test_a_million_calls_are_capped_with_a_truncated_marker(settings):
    settings.HOT = {**settings.HOT, "TRACE_MAX_SPANS": 100}

    run = run_of("trace:many", {"n": 1_000_000})

    assert run.status == RunStatus.SUCCEEDED and run.result == 1_000_000
    assert run.trace.span_count == 100
    assert run.trace.is_truncated
    assert run.trace.data["dropped_spans"] == 1_000_000 + 1 - 100


def test_a_byte_budget_also_caps_the_trace(settings):
    settings.HOT = {**settings.HOT, "TRACE_MAX_BYTES": 5_000}

    run = run_of("trace:many", {"n": 1000})

    assert run.trace.is_truncated
    assert run.trace.span_count < 100


def test_secret_looking_names_and_keys_are_masked():
    run = run_of("trace:secrets")

    spans = by_name(run)
    [login] = spans["login"]
    assert dict(login["args"])["password"] == "••••"
    assert dict(login["args"])["user"] == "'alice'"
    assert (
        "Bearer" not in dict(login["args"])["options"]
        and "'retries': 3" in dict(login["args"])["options"]
    )
    assert "s3cr3t" not in login["result"]
    assert spans["secrets"][0]["values"] == [["api_key", "••••"]]


def test_values_whose_repr_raises_or_is_huge_are_stored_safely():
    run = run_of("trace:odd-values")

    assert run.status == RunStatus.SUCCEEDED
    [takes] = by_name(run)["takes"]
    assert dict(takes["args"])["odd"] == "<Unprintable object; repr raised RuntimeError>"
    assert len(dict(takes["args"])["huge"]) <= 200 and "..." in dict(takes["args"])["huge"]


def test_an_async_handler_and_the_coroutines_it_awaits_are_traced():
    run = run_of("trace:async")

    assert run.result == 42
    [root] = run.trace.tree()
    assert root["kind"] == "coroutine" and root["result"] == "42"
    [fetch] = root["children"]
    assert fetch["name"] == "fetch" and fetch["kind"] == "coroutine"
    assert dict(fetch["args"]) == {"n": "21"} and fetch["result"] == "42"
    assert fetch["duration_us"] >= 1000  # it awaited asyncio.sleep(0.001)


def test_a_handler_can_switch_tracing_off():
    run = run_of("trace:off")

    assert run.status == RunStatus.SUCCEEDED
    assert not RunTrace.objects.filter(run=run).exists()


def test_tracing_can_be_switched_off_globally(settings):
    settings.HOT = {**settings.HOT, "TRACE": False}

    run_of("trace:nested", {"items": []})

    assert not RunTrace.objects.exists()


def test_two_threads_tracing_at_once_keep_their_own_calls():
    results: dict[str, dict] = {}
    # Both threads pass each step together: each records its calls while the other's tracer
    # is installed and recording too.
    in_step = threading.Barrier(2, timeout=10)

    def traced(who: str) -> None:
        tracer = Tracer(UserCode([], []), max_spans=1000, max_bytes=10**6)
        tracer.start()
        try:
            for i in range(50):
                in_step.wait()
                trace_handlers.step_of(who, i)
        finally:
            tracer.stop()
        results[who] = tracer.document()

    threads = [threading.Thread(target=traced, args=(who,)) for who in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    for who in ("a", "b"):
        spans = results[who]["spans"]
        assert len(spans) == 50
        assert {dict(s["args"])["who"] for s in spans} == {repr(who)}


@pytest.mark.services
def test_runs_traced_at_once_on_a_worker_thread_pool_do_not_mix(celery_worker, settings):
    # One run per claim, so that the two runs go to two threads instead of one batch.
    settings.HOT = {**settings.HOT, "CLAIM_BATCH": 1}
    send("trace:concurrent", {"who": "left"})
    send("trace:concurrent", {"who": "right"})

    wait_for(lambda: Run.objects.filter(status=RunStatus.SUCCEEDED).count() == 2, what="both runs")
    for run in Run.objects.select_related("trace"):
        steps = [s for s in run.trace.data["spans"] if s["name"] == "step_of"]
        assert len(steps) == 20
        assert {dict(s["args"])["who"] for s in steps} == {repr(run.result)}


@pytest.mark.services
def test_a_cancel_takes_effect_at_the_next_traced_call(celery_worker):
    send("trace:busy")
    run = wait_for(
        lambda: Run.objects.filter(status=RunStatus.RUNNING).first(), what="the run to start"
    )

    cancel_run(run.id)

    wait_for(
        lambda: Run.objects.filter(id=run.id, status=RunStatus.CANCELLED).exists(),
        what="the run to stop at a traced call",
    )
    trace = RunTrace.objects.get(run_id=run.id)
    [root] = trace.tree()
    assert root["incomplete"] and 0 < len(root["children"]) < 1500


def test_a_setting_can_widen_user_code_to_a_library(settings):
    def traced_names() -> list[str]:
        Run.objects.all().delete()
        return [span["name"] for span in run_of("trace:libraries").trace.data["spans"]]

    assert "loads" not in traced_names()

    settings.HOT = {**settings.HOT, "TRACE_INCLUDE": ["json"]}

    widened = traced_names()
    assert "loads" in widened and "JSONDecoder.decode" in widened


def test_a_setting_can_narrow_user_code(settings):
    assert "helper" in by_name(run_of("trace:libraries"))
    Run.objects.all().delete()

    settings.HOT = {**settings.HOT, "TRACE_EXCLUDE": ["tests.vendored"]}

    assert set(by_name(run_of("trace:libraries"))) == {"libraries", "add_tax"}


def test_an_int_too_long_for_repr_is_shown_by_its_size_and_the_run_goes_on():
    run = run_of("trace:huge-int")

    assert run.status == RunStatus.SUCCEEDED
    [takes] = by_name(run)["takes_number"]
    assert dict(takes["args"])["n"] == "<int of 16610 bits>"
    assert takes["result"] == "<int of 16610 bits>"


def test_dataclasses_namedtuples_and_the_event_are_shown_with_their_secrets_masked():
    run = run_of("trace:objects", {"user": "alice", "password": "hunter2"})

    [root] = run.trace.tree()
    assert dict(root["args"])["event"] == (
        f"Event(id={run.event_id!r}, type='trace:objects', "
        "data={'user': 'alice', 'password': ••••})"
    )
    [takes] = by_name(run)["takes_objects"]
    args = dict(takes["args"])
    assert args["account"] == "Credentials(user='alice', password=••••)"
    assert args["pair"] == "Pair(token=••••, n=1)"
    assert args["options"] == "OrderedDict({'secret_key': ••••, 'debug': True})"
    assert "hunter2" not in json.dumps(run.trace.data)


def test_a_queryset_or_a_model_passed_to_a_traced_call_is_not_queried():
    send("trace:queryset")
    run = Run.objects.get()

    with CaptureQueriesContext(connection) as queries:
        drain()

    # What the QuerySet's repr would run (the handler's own get() has a LIMIT 21 too).
    assert not [q for q in queries if "LIMIT 21" in q["sql"] and "'queued'" in q["sql"]]
    run = Run.objects.select_related("trace").get(id=run.id)
    [takes] = by_name(run)["takes_rows"]
    assert dict(takes["args"]) == {
        "rows": "<QuerySet of Run>",
        "row": f"<Run: pk={run.id!r}>",
    }


def test_the_user_code_cache_stays_bounded(monkeypatch):
    monkeypatch.setattr(tracer_module, "MAX_CACHED_CODE", 10)
    user_code = UserCode([], [])
    functions = [
        trace_handlers.defined_in("tests.generated", f"/tmp/generated_{n}.py") for n in range(30)
    ]

    tracer = Tracer(user_code, max_spans=1000, max_bytes=10**6)
    tracer.start()
    try:
        for fn in functions:
            fn(1)
    finally:
        tracer.stop()

    assert len(user_code._cache) <= 10
    assert tracer.document()["span_count"] == 30  # and every decision was still right
