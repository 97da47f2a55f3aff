"""Optional export of finished runs as OpenTelemetry spans (HOT["OTEL_EXPORT"] = True).

After a batch's outcomes commit, each run that ran becomes a root span named after its function
(attributes: run id, function, status, attempt, trigger, event type, stream id; an error status
and an exception event when it failed), with its recorded trace's calls as child spans, timed
from the trace's start_us/duration_us offsets. Nothing is exported for an attempt whose outcome
did not commit (transaction.on_commit), and nothing at all is imported when the setting is off.

The spans go to the process's OpenTelemetry tracer provider: the one a project configured
(its own SDK set-up, or `opentelemetry-instrument`), or else one made here from the standard
environment variables: OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES for the resource,
OTEL_TRACES_EXPORTER (`otlp`, the default, `console` or `none`) and the OTEL_EXPORTER_OTLP_*
variables for the exporter, behind a batch processor. Needs the `[otel]` extra.

Values (arguments, results) are not exported: a trace backend is a second place for payloads
to leak from; a span carries the call's name and place.
"""

import logging
import os
import threading
from datetime import datetime
from typing import Any

from django.db import transaction

from hotapp.conf import hot_settings

logger = logging.getLogger("hot.otel")

INSTRUMENTATION = "hot"
_FAILED = ("failed", "pending_retry")
_lock = threading.Lock()
_tracers: dict[int, Any] = {}  # by id() of the provider they came from


def export_on_commit(outcomes: list) -> None:
    """Export these outcomes' runs once the current transaction commits (executor.complete's
    one line); returns at once when the export is off."""
    if not outcomes or not hot_settings()["OTEL_EXPORT"]:
        return
    transaction.on_commit(lambda: export(outcomes))


def export(outcomes: list) -> None:
    """Turn each outcome (runtime.executor.Outcome) into spans. Never raises: an exporter's
    trouble must not fail a run that has already committed."""
    try:
        tracer = _get_tracer()
        for outcome in outcomes:
            _export_run(tracer, outcome)
    except Exception:
        logger.exception("OpenTelemetry export failed", extra={"action": "otel_export_failed"})


def _get_tracer() -> Any:
    from opentelemetry import trace

    with _lock:
        provider = trace.get_tracer_provider()
        if not _is_sdk_provider(provider):
            # No SDK set up by the project: one from the OTEL_* environment (set once).
            trace.set_tracer_provider(_provider_from_environment())
            provider = trace.get_tracer_provider()
        if id(provider) not in _tracers:
            _tracers[id(provider)] = provider.get_tracer(INSTRUMENTATION)
        return _tracers[id(provider)]


def _is_sdk_provider(provider: Any) -> bool:
    from opentelemetry.sdk.trace import TracerProvider

    return isinstance(provider, TracerProvider)


def _provider_from_environment() -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    provider = TracerProvider(resource=Resource.create({"service.name": "hot"}))
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if kind == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif kind != "none":
        # Reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT, ...
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _ns(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000) * 1000


def _export_run(tracer: Any, outcome: Any) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    run = outcome.run
    start = _ns(outcome.started_at or outcome.finished_at)
    end = max(_ns(outcome.finished_at), start)
    attributes = {
        "hot.run.id": str(run.id),
        "hot.function": run.function,
        "hot.run.status": str(outcome.status),
        "hot.run.attempt": run.attempt,
        "hot.run.trigger": str(run.trigger),
        "hot.event.type": run.event_type or "",
        "hot.stream.id": str(run.stream_id),
    }
    if run.origin_run_id:
        attributes["hot.origin_run.id"] = str(run.origin_run_id)
    root = tracer.start_span(
        run.function, start_time=start, attributes=attributes, kind=trace.SpanKind.CONSUMER
    )
    if outcome.status in _FAILED and outcome.error is not None:
        error = outcome.error
        summary = f"{error['error_type']}: {error['error_message']}"
        root.set_status(Status(StatusCode.ERROR, summary))
        root.add_event(
            "exception",
            {
                "exception.type": error["error_type"],
                "exception.message": error["error_message"],
                "exception.stacktrace": error["error_traceback"],
            },
            timestamp=end,
        )
    else:
        root.set_status(Status(StatusCode.OK))
    spans = (outcome.trace or {}).get("spans", [])
    made: list[Any] = []
    ends: list[int] = []
    for span in spans:
        parent_index = span.get("parent")
        parent = root if parent_index is None else made[parent_index]
        begin = start + int(span.get("start_us", 0)) * 1000
        child = tracer.start_span(
            span.get("name", "?"),
            context=trace.set_span_in_context(parent),
            start_time=begin,
            attributes={
                "code.function": span.get("name", ""),
                "code.namespace": span.get("module", ""),
                "code.filepath": span.get("file", ""),
                "code.lineno": int(span.get("line") or 0),
            },
        )
        failure = span.get("error")
        if isinstance(failure, dict):
            message = f"{failure.get('type', '')}: {failure.get('message', '')}"
            child.set_status(Status(StatusCode.ERROR, message))
        made.append(child)
        ends.append(begin + int(span.get("duration_us") or 0) * 1000)
    # Children end before their parents, as they did in the run.
    for child, child_end in reversed(list(zip(made, ends, strict=True))):
        child.end(end_time=child_end)
    root.end(end_time=end)
