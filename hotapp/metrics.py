"""Prometheus metrics of runs, read from the database when Prometheus scrapes `/metrics`.

Two kinds of figures, each cheap however many runs the table holds:

- **Gauges of what is in flight** (runs queued, running or pending a retry, by function; queue
  depth and the age of the oldest queued run, per queue): one GROUP BY over the active rows
  only (status IN (...) reads run_status_idx), so the cost follows the backlog, not the table.
- **Counters and histograms of finished attempts** (by function and status; retry attempts;
  run duration; queue wait): built incrementally, in this process. Each scrape reads only the
  attempts that finished since the previous scrape, through run_updated_idx (a row's
  updated_at is stamped when it finishes, so `updated_at > since` bounds the index range and
  `finished_at` picks the ones that finished in the window), and adds them to totals kept in
  memory. Counters therefore start at zero when the process starts, which is what Prometheus
  expects of a counter after a restart (rate() and increase() handle the reset).

A window ends SETTLE_SECONDS before the scrape: an attempt's finished_at is stamped before its
batch commits, so one that finished a moment ago may not be visible yet; every attempt whose
outcome commits within SETTLE_SECONDS of its finish is counted exactly once, in the window its
finished_at falls in. An attempt's later changes (a pending retry promoted, a failed attempt
superseded by a manual retry) keep its finished_at, so they never count it twice.
"""

import hmac
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum, Value
from django.db.models.lookups import LessThanOrEqual
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from hotapp.auth import api_view, bearer_secret, json_error
from hotapp.conf import hot_settings
from hotapp.models import ACTIVE_STATUSES, Run, RunStatus, Trigger

# Seconds; handlers take milliseconds to minutes, tasks up to hours.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)
# The finished statuses an attempt is counted under (pending_retry: it failed, a retry is due).
FINISHED_STATUSES = (
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    RunStatus.PENDING_RETRY,
)
QUEUES = ("event", "task")  # the event queue (hot.drain) and the task queue (TASK_QUEUE)


class Histogram:
    """Cumulative bucket counts (le each bound, then +Inf), their sum, as Prometheus exposes."""

    def __init__(self) -> None:
        self.cumulative = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def add(self, at_most: list[int], count: int, total: float) -> None:
        """Add `count` observations summing to `total`, `at_most[i]` of them <= BUCKETS[i]."""
        for index, value in enumerate([*at_most, count]):
            self.cumulative[index] += value
        self.total += total

    def buckets(self) -> list[tuple[str, int]]:
        bounds = [*map(floatToGoString, BUCKETS), "+Inf"]  # "5.0", as prometheus_client's own
        return list(zip(bounds, self.cumulative, strict=True))


def _seconds(value: Any) -> float:
    """A summed duration: a timedelta, or None for no rows."""
    return value.total_seconds() if value is not None else 0.0


def _window_aggregates() -> dict[str, Any]:
    """Per (function, status): counts, and each histogram's buckets and sum, computed by the
    database (a window may hold tens of thousands of attempts; Python would take ~20 µs each)."""
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    wait = ExpressionWrapper(F("started_at") - F("created_at"), output_field=DurationField())
    aggregates: dict[str, Any] = {
        "count": Count("id"),
        "retried": Count("id", filter=Q(attempt__gt=1)),
        "started": Count("started_at"),
        "duration_sum": Sum(duration),
        "wait_sum": Sum(wait),
    }
    for index, bound in enumerate(BUCKETS):
        limit = Value(timedelta(seconds=bound), output_field=DurationField())
        aggregates[f"duration_{index}"] = Count("id", filter=LessThanOrEqual(duration, limit))
        aggregates[f"wait_{index}"] = Count("id", filter=LessThanOrEqual(wait, limit))
    return aggregates


class RunCollector(Collector):
    """The runs' metrics, for a CollectorRegistry; one per process (see the module's doc)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # The end of the last window counted; None until the first scrape, which starts
        # counting from there (nothing before it).
        self.since: datetime | None = None
        self.finished: dict[tuple[str, str], int] = defaultdict(int)
        self.retried: dict[tuple[str, str], int] = defaultdict(int)
        self.duration: dict[str, Histogram] = defaultdict(Histogram)
        self.wait: dict[str, Histogram] = defaultdict(Histogram)

    def describe(self) -> list:
        return []  # no describe-time database read when the collector is registered

    def collect(self) -> Iterator[Any]:
        now = timezone.now()
        with self.lock:
            self.count_finished(now)
            yield from self.finished_families()
        yield from self.active_families(now)

    # Finished attempts, incrementally ---------------------------------------------------------

    def count_finished(self, now: datetime) -> int:
        """Add the attempts that finished in (since, now - settle] to the totals; how many."""
        end = now - timedelta(seconds=hot_settings()["METRICS_SETTLE_SECONDS"])
        if self.since is None or end <= self.since:
            self.since = end if self.since is None else self.since
            return 0
        groups = (
            Run.objects.filter(
                # run_updated_idx bounds the read: a finish stamps updated_at >= finished_at.
                updated_at__gt=self.since,
                finished_at__gt=self.since,
                finished_at__lte=end,
                status__in=FINISHED_STATUSES,
            )
            .values("function", "status")
            .annotate(**_window_aggregates())
            .order_by()
        )
        count = 0
        for group in groups:
            function, status = group["function"], group["status"]
            count += group["count"]
            self.finished[function, status] += group["count"]
            if group["retried"]:
                self.retried[function, status] += group["retried"]
            if group["started"]:  # a run cancelled while queued never started: no timing
                for name, histograms in (("duration", self.duration), ("wait", self.wait)):
                    at_most = [group[f"{name}_{i}"] for i in range(len(BUCKETS))]
                    total = _seconds(group[f"{name}_sum"])
                    histograms[function].add(at_most, group["started"], total)
        self.since = end
        return count

    def finished_families(self) -> Iterator[Any]:
        finished = CounterMetricFamily(
            "hot_runs_finished",
            "Run attempts that finished since this process started counting, by function and "
            "status (pending_retry: failed with a retry due).",
            labels=["function", "status"],
        )
        for (function, status), value in sorted(self.finished.items()):
            finished.add_metric([function, status], value)
        yield finished
        retried = CounterMetricFamily(
            "hot_retry_attempts_finished",
            "Finished run attempts that were retries (attempt > 1), by function and status.",
            labels=["function", "status"],
        )
        for (function, status), value in sorted(self.retried.items()):
            retried.add_metric([function, status], value)
        yield retried
        for name, doc, histograms in (
            ("hot_run_duration_seconds", "Run time of finished attempts (finished_at - "
             "started_at), by function.", self.duration),
            ("hot_run_queue_wait_seconds", "Time finished attempts waited for a worker "
             "(started_at - created_at), by function.", self.wait),
        ):  # fmt: skip
            family = HistogramMetricFamily(name, doc, labels=["function"])
            for function, histogram in sorted(histograms.items()):
                family.add_metric([function], histogram.buckets(), histogram.total)
            yield family

    # In flight, read whole at each scrape -----------------------------------------------------

    def active_families(self, now: datetime) -> Iterator[Any]:
        # Only the active rows: status IN (...) is a range of run_status_idx.
        rows = (
            Run.objects.filter(status__in=ACTIVE_STATUSES)
            .values("function", "status", "wait_reason")
            .annotate(
                count=Count("id"),
                task_count=Count("id", filter=Q(trigger=Trigger.TASK)),
                oldest_event=Min("created_at", filter=~Q(trigger=Trigger.TASK)),
                oldest_task=Min("created_at", filter=Q(trigger=Trigger.TASK)),
            )
            .order_by("function", "status", "wait_reason")
        )
        active = GaugeMetricFamily(
            "hot_runs_active",
            "Runs queued, running or pending a retry now, by function and status.",
            labels=["function", "status"],
        )
        pending = GaugeMetricFamily(
            "hot_retries_pending",
            "Failed attempts whose retry is scheduled (status pending_retry), by function.",
            labels=["function"],
        )
        held = GaugeMetricFamily(
            "hot_runs_held",
            "Queued runs held back, by function and reason (delay, concurrency, rate_limit, "
            "debounce, sleep, event); not in hot_queue_depth.",
            labels=["function", "reason"],
        )
        depth = dict.fromkeys(QUEUES, 0)
        oldest: dict[str, datetime | None] = dict.fromkeys(QUEUES)
        counts: dict[tuple[str, str], int] = {}
        for row in rows:
            key = (row["function"], row["status"])
            counts[key] = counts.get(key, 0) + row["count"]
            if row["status"] == RunStatus.PENDING_RETRY:
                pending.add_metric([row["function"]], row["count"])
            if row["status"] != RunStatus.QUEUED:
                continue
            if row["wait_reason"]:
                # Held runs wait for their time or a slot, not for a worker.
                held.add_metric([row["function"], row["wait_reason"]], row["count"])
                continue
            depth["task"] += row["task_count"]
            depth["event"] += row["count"] - row["task_count"]
            for queue, first in (("event", row["oldest_event"]), ("task", row["oldest_task"])):
                if first is not None and (oldest[queue] is None or first < oldest[queue]):
                    oldest[queue] = first
        for (function, status), count in counts.items():
            active.add_metric([function, status], count)
        yield active
        yield pending
        yield held
        queue_depth = GaugeMetricFamily(
            "hot_queue_depth",
            "Queued runs waiting for a worker, per queue (event: handler runs; task: task "
            "attempts).",
            labels=["queue"],
        )
        queue_age = GaugeMetricFamily(
            "hot_queue_oldest_age_seconds",
            "Age of the oldest queued run (now - created_at), per queue; 0 when it is empty.",
            labels=["queue"],
        )
        for queue in QUEUES:
            queue_depth.add_metric([queue], depth[queue])
            first = oldest[queue]
            age = max((now - first).total_seconds(), 0.0) if first is not None else 0.0
            queue_age.add_metric([queue], age)
        yield queue_depth
        yield queue_age


collector = RunCollector()
registry = CollectorRegistry(auto_describe=False)
registry.register(collector)


# The endpoint ---------------------------------------------------------------------------------


def _exposition(request: HttpRequest) -> HttpResponse:
    # Prometheus's text format, or OpenMetrics when the scraper asks for it.
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)


_for_users = api_view(methods=("GET",))(_exposition)


def metrics(request: HttpRequest) -> HttpResponse:
    """GET <hot>/metrics: for a scraper sending `Authorization: Bearer <HOT["METRICS_TOKEN"]>`
    (a shared secret in settings, so a scraper needs no user), or as the API: an API token or a
    session whose user has hotapp.view_run. Answers refusals in JSON, as the API does."""
    expected = hot_settings()["METRICS_TOKEN"]
    secret = bearer_secret(request)
    if expected and secret and hmac.compare_digest(secret.encode(), str(expected).encode()):
        if request.method != "GET":
            return json_error(405, "method_not_allowed", "Use GET here.")
        return _exposition(request)
    return _for_users(request)
