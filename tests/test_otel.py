"""HOT["OTEL_EXPORT"]: a run that a real worker ran becomes an OpenTelemetry root span with its
trace's calls as children, caught by the SDK's in-memory exporter."""

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from hotapp.models import Run, RunStatus
from runtime import send
from tests import trace_handlers  # noqa: F401  (registers the trace:* handlers)
from tests.conftest import wait_for

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def exporter():
    """The process's tracer provider, as a project that set up the SDK has (set once: the
    OpenTelemetry API allows no second one), exporting to memory."""
    memory = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


@pytest.fixture
def spans(exporter):
    exporter.clear()
    yield exporter
    exporter.clear()


def finished(event_type: str) -> Run:
    return wait_for(
        lambda: Run.objects.filter(event_type=event_type, finished_at__isnull=False).first(),
        what=f"the {event_type} run to finish",
    )


def test_a_run_becomes_a_root_span_with_its_traced_calls_as_children(
    celery_worker, settings, spans
):
    settings.HOT = {**settings.HOT, "OTEL_EXPORT": True}
    send("trace:nested", {"items": [{"price": 10}, {"price": 2.5}]})
    run = finished("trace:nested")
    exported = wait_for(lambda: len(spans.get_finished_spans()) >= 4 and spans.get_finished_spans())

    [root] = [s for s in exported if s.parent is None]
    assert root.name == "tests.trace_handlers.nested"
    assert root.attributes["hot.run.id"] == str(run.id)
    assert root.attributes["hot.function"] == run.function
    assert root.attributes["hot.run.status"] == RunStatus.SUCCEEDED
    assert root.attributes["hot.run.attempt"] == 1
    assert root.attributes["hot.event.type"] == "trace:nested"
    assert root.attributes["hot.stream.id"] == str(run.stream_id)
    assert root.status.status_code == StatusCode.OK
    assert root.start_time <= root.end_time

    # nested -> price -> add_tax, as the recorded trace has them, in the root's trace.
    by_name = {s.name: s for s in exported}
    assert {"nested", "price", "add_tax"} <= set(by_name)
    assert by_name["nested"].parent.span_id == root.context.span_id
    assert by_name["price"].parent.span_id == by_name["nested"].context.span_id
    assert by_name["add_tax"].parent.span_id == by_name["price"].context.span_id
    assert {s.context.trace_id for s in exported} == {root.context.trace_id}
    assert by_name["price"].attributes["code.namespace"] == "tests.trace_handlers"
    assert root.start_time <= by_name["nested"].start_time <= by_name["add_tax"].end_time
    assert by_name["add_tax"].end_time <= root.end_time


def test_a_failed_run_exports_an_error_status_and_the_failing_call(celery_worker, settings, spans):
    settings.HOT = {**settings.HOT, "OTEL_EXPORT": True}
    send("trace:fails", {"items": [{"price": 1}]})
    finished("trace:fails")
    exported = wait_for(lambda: len(spans.get_finished_spans()) >= 4 and spans.get_finished_spans())

    [root] = [s for s in exported if s.parent is None]
    assert root.status.status_code == StatusCode.ERROR
    assert "ValueError: negative: -5" in root.status.description
    [event] = root.events
    assert event.name == "exception" and event.attributes["exception.type"] == "ValueError"
    [risky] = [s for s in exported if s.name == "risky"]
    assert risky.status.status_code == StatusCode.ERROR


def test_nothing_is_exported_when_the_setting_is_off(celery_worker, spans):
    send("trace:nested", {"items": [{"price": 1}]})
    finished("trace:nested")
    send("trace:nested", {"items": [{"price": 2}]})  # a second run: the first one's export
    wait_for(lambda: Run.objects.filter(status=RunStatus.SUCCEEDED).count() == 2)  # had time
    assert spans.get_finished_spans() == ()
