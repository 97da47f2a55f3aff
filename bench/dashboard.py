"""What the dashboard's pages cost on a large database.

    python bench/dashboard.py [--runs 1000000] [--reuse]

1. Loads about N runs of the 3-step order workflow (hotapp/demo/handlers.py), with their events
   and traces, spread over the last 30 days, into the scratch database `hot_bench_dashboard`
   (BENCH_DASHBOARD_DATABASE_URL). Rows are generated in SQL; --reuse measures a loaded database
   again (its newest rows then age: the overview's last hour empties).
2. Times each dashboard request, and /metrics (steady, and with an hour's and a day's finished
   attempts in its window), through django.test.Client (DEBUG off, logged in as a
   superuser): 3 warm-up calls, then 30 timed; prints p50 and p95, marking p95 over 100 ms.
3. For each slow request: the SQL it runs and EXPLAIN (ANALYZE, BUFFERS) of its slowest statement.
Prints plain lines; asserts nothing.
"""

import argparse
import html
import json
import os
import re
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import harness  # noqa: E402

DATABASE_URL = os.environ.get(
    "BENCH_DASHBOARD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hot_bench_dashboard"
)
TABLES = ("hotapp_event", "hotapp_run", "hotapp_runtrace")
WARMUP, TIMED, SLOW_MS = 3, 30, 100.0
DAYS = 30
# How a workflow's first step (on_order_created) ends; later steps run only once it succeeds.
# In-flight fates are drawn for the last hour's workflows only: older ones would long since have
# been claimed, promoted or recovered by the sweeper.
FATES = [("retried", 0.08), ("failed", 0.02), ("cancelled", 0.003)]
IN_FLIGHT = [("queued", 0.02), ("running", 0.01), ("pending_retry", 0.01)]
# 3 runs, plus the retry row if retried; 2 rows if failed for good (both attempts), 1 if cancelled.
RUNS_PER_WORKFLOW = 3 + 0.08 - 0.02 - 2 * 0.003
ERROR_TYPE = "hotapp.demo.handlers.PaymentDeclined"
ERROR_MESSAGE = "card network timed out"


def configure() -> None:
    """harness.configure(), but with this benchmark's database and the demo handlers (which fill
    the dashboard's function and event-type lists); harness.configure pins HOT_HANDLER_MODULES."""
    os.environ.update(
        DATABASE_URL=DATABASE_URL,
        DJANGO_SETTINGS_MODULE="hotproject.settings",
        HOT_HANDLER_MODULES="hotapp.demo.handlers",
        HOT_LOG_LEVEL="WARNING",
        HOT_DEBUG="false",
        ALLOWED_HOSTS="testserver",  # the test Client's host; no test environment is set up
    )
    harness.DATABASE_URL = DATABASE_URL  # harness.recreate_database() reads it when called
    import django

    django.setup()


# Loading: SQL that generates every row in a few statements.


def uuid7(ts: str) -> str:
    """SQL for a version-7 UUID of timestamp `ts`: its Unix milliseconds in the first 48 bits
    (hotapp/ids.py's layout), version bits 0111 set over gen_random_uuid()'s 0100."""
    millis = f"substring(int8send(floor(extract(epoch FROM {ts}) * 1000)::bigint) FROM 3)"
    raw = f"overlay(uuid_send(gen_random_uuid()) PLACING {millis} FROM 1 FOR 6)"
    return f"encode(set_bit(set_bit({raw}, 52, 1), 53, 1), 'hex')::uuid"


def ms(expr: str) -> str:
    return f"(({expr}) * interval '1 millisecond')"


# One row per workflow (order n). Its speed factor k (0.5 to 1.5) scales every step: a run starts
# 10*k ms after it is queued and takes 40*k ms; a retry is queued 1 s (Retry(3, delay=1)) after
# the failed attempt. The newest workflow is a few seconds old, the oldest DAYS old.
WORKFLOWS_SQL = f"""
CREATE TEMP TABLE wf AS
WITH drawn AS (
  SELECT n, random() AS u, 0.5 + random() AS k,
         %(now)s::timestamptz - interval '5 seconds'
           - interval '{DAYS} days' * ((%(w)s - n + random()) / %(w)s) AS t0
  FROM generate_series(1, %(w)s) AS n
), fated AS (
  SELECT n, k, t0, CASE @CASES@ ELSE 'ok' END AS fate FROM drawn
), timed AS (
  SELECT *, t0 + {ms("50 * k + 1000")} AS r1b_at,
         t0 + {ms("50 * k + CASE fate WHEN 'retried' THEN 1000 + 50 * k ELSE 0 END")} AS e2_at
  FROM fated
)
SELECT *, e2_at + {ms("30 * k")} AS e3_at,
       {uuid7("t0")} AS e1_id, {uuid7("t0")} AS r1_id, {uuid7("r1b_at")} AS r1b_id,
       {uuid7("e2_at")} AS e2_id, {uuid7("e2_at")} AS r2_id,
       {uuid7("e2_at + " + ms("30 * k"))} AS e3_id, {uuid7("e2_at + " + ms("30 * k"))} AS r3_id
FROM timed
"""

# The payloads hotapp/demo/handlers.py sends, for order n.
CREATED_DATA = """jsonb_build_object('order_id', n,
  'customer', jsonb_build_object('email', 'customer' || n || '@example.com'),
  'items', jsonb_build_array(jsonb_build_object('sku', 'mug', 'price', 12.5),
                             jsonb_build_object('sku', 'tee', 'price', 20.0 + mod(n, 50))))"""
PAID_DATA = "jsonb_build_object('order_id', n, 'amount', 32.5 + mod(n, 50))"
TRACKING = "'TRK' || lpad(n::text, 6, '0')"
SHIPPED_DATA = f"jsonb_build_object('order_id', n, 'tracking', {TRACKING})"

# A stream is identified by the id of the event that started it (runtime/events.py).
EVENTS_SQL = f"""
INSERT INTO hotapp_event (id, type, data, source_run_id, stream_id, created_at, is_handled)
SELECT e.id, e.type, e.data, e.source_run_id, wf.e1_id, e.created_at, true
FROM wf CROSS JOIN LATERAL (VALUES
  (e1_id, 'order:created', {CREATED_DATA}, NULL::uuid, t0),
  (e2_id, 'order:paid', {PAID_DATA}, CASE fate WHEN 'retried' THEN r1b_id ELSE r1_id END, e2_at),
  (e3_id, 'order:shipped', {SHIPPED_DATA}, r2_id, e3_at)
) AS e(id, type, data, source_run_id, created_at)
WHERE e.type = 'order:created' OR fate IN ('ok', 'retried')
"""

# One VALUES row per attempt a workflow may have; a NULL status: it never got that far.
RUNS_SQL = f"""
INSERT INTO hotapp_run (id, function, trigger, event_id, event_type, stream_id, input, status,
  attempt, origin_run_id, retry_policy, result, error_type, error_message, error_traceback,
  created_at, updated_at, queued_at, started_at, finished_at, next_retry_at, claimed_by,
  lease_expires_at, recovery_count, cancel_requested_at, is_superseded)
SELECT r.id, h.function, 'event', r.event_id, h.event_type, wf.e1_id,
  CASE r.step WHEN 1 THEN {CREATED_DATA} WHEN 2 THEN {PAID_DATA} ELSE {SHIPPED_DATA} END,
  r.status, r.attempt, r.origin, h.policy,
  CASE WHEN r.status = 'succeeded' THEN CASE r.step
    WHEN 1 THEN jsonb_build_object('charge_id', 'ch_' || n, 'amount', 32.5 + mod(n, 50))
    WHEN 2 THEN jsonb_build_object('tracking', {TRACKING})
    ELSE to_jsonb('order ' || n || ' shipped, tracking ' || {TRACKING}) END END,
  CASE WHEN r.failed THEN %(error_type)s ELSE '' END,
  CASE WHEN r.failed THEN %(error_message)s ELSE '' END,
  CASE WHEN r.failed THEN %(traceback)s ELSE '' END,
  r.created_at, coalesce(r.finished_at, r.started_at, r.created_at), r.created_at,
  r.started_at, r.finished_at,
  CASE WHEN r.status = 'pending_retry' THEN r.finished_at + interval '1 second' END,
  CASE WHEN r.started_at IS NULL THEN ''
    ELSE 'worker-' || mod(n, 2) || ':' || (4000 + mod(n, 7)) || ':' || left(md5(r.id::text), 8) END,
  CASE WHEN r.status = 'running' THEN %(now)s::timestamptz + interval '60 seconds' END,
  0, CASE WHEN r.status = 'cancelled' THEN r.finished_at END,
  -- A first attempt that was retried (its second attempt exists) no longer needs attention.
  r.step = 1 AND r.attempt = 1 AND fate IN ('retried', 'failed')
FROM wf CROSS JOIN LATERAL (VALUES
  (r1_id, 1, 1, NULL::uuid, e1_id, t0,
   CASE fate WHEN 'ok' THEN 'succeeded' WHEN 'retried' THEN 'failed' ELSE fate END,
   CASE WHEN fate NOT IN ('queued', 'cancelled') THEN t0 + {ms("10 * k")} END,
   CASE WHEN fate = 'cancelled' THEN t0 + {ms("5 * k")}
        WHEN fate NOT IN ('queued', 'running') THEN t0 + {ms("50 * k")} END),
  (r1b_id, 1, 2, r1_id, e1_id, r1b_at,
   CASE fate WHEN 'retried' THEN 'succeeded' WHEN 'failed' THEN 'failed' END,
   r1b_at + {ms("10 * k")}, r1b_at + {ms("50 * k")}),
  (r2_id, 2, 1, NULL, e2_id, e2_at, CASE WHEN fate IN ('ok', 'retried') THEN 'succeeded' END,
   e2_at + {ms("10 * k")}, e3_at),
  (r3_id, 3, 1, NULL, e3_id, e3_at, CASE WHEN fate IN ('ok', 'retried') THEN 'succeeded' END,
   e3_at + {ms("10 * k")}, e3_at + {ms("30 * k")})
) AS r0(id, step, attempt, origin, event_id, created_at, status, started_at, finished_at)
CROSS JOIN LATERAL (SELECT r0.*, r0.status IN ('failed', 'pending_retry') AS failed) AS r
JOIN bench_handlers h ON h.step = r.step
WHERE r.status IS NOT NULL
"""

# A trace for every run that ran to an outcome (the executor saves none for a run cancelled while
# queued, nor yet for a running one): its function's document with the order filled in.
TRACES_SQL = """
INSERT INTO hotapp_runtrace (run_id, data, span_count, is_truncated)
SELECT r.id, replace(replace(t.doc, '@N@', r.input ->> 'order_id'),
                     '@T@', 'TRK' || lpad(r.input ->> 'order_id', 6, '0'))::jsonb,
       t.span_count, false
FROM hotapp_run r JOIN bench_traces t ON t.function = r.function AND t.failed = (r.error_type <> '')
WHERE r.started_at IS NOT NULL AND r.finished_at IS NOT NULL
"""

# Small tables the statements above join: the registered handlers, the trace documents.
LOOKUPS = {
    "bench_handlers": "step int, function text, event_type text, policy jsonb",
    "bench_traces": "function text, failed bool, doc text, span_count int",
}
TRACEBACK = (
    'Traceback (most recent call last):\n  File "hotapp/demo/handlers.py", line 24, in '
    f'charge_payment\n    raise PaymentDeclined("{ERROR_MESSAGE}")\n{ERROR_TYPE}: {ERROR_MESSAGE}\n'
)


def handler_rows() -> list[tuple]:
    """(step, function, event type, retry policy) from the registry, as the runtime stores them."""
    from runtime.registry import all_handlers

    steps = {"order:created": 1, "order:paid": 2, "order:shipped": 3}
    return [
        (steps[h.event_type], h.name, h.event_type, json.dumps(h.retry.as_dict()))
        for h in all_handlers()
        if h.event_type in steps
    ]


def trace_rows() -> list[tuple]:
    """(function, failed, document, span count): runtime/trace_recorder.py's format for the
    demo's calls, with @N@ for the order id and @T@ for its tracking number."""
    from hotapp.demo import handlers as demo

    failure = {"type": ERROR_TYPE, "message": f"PaymentDeclined('{ERROR_MESSAGE}')"}
    order = "{'id': @N@, 'items': [{'sku': 'mug', 'price': 12.5}, ...], 'total': 45.5}"
    charge, tracking = "{'charge_id': 'ch_@N@', 'amount': 45.5}", "{'tracking': '@T@'}"
    note, data = "'order @N@ shipped, tracking @T@'", "{'order_id': @N@, ...}"
    calls = {  # handler: its result, and the (function, args, result) calls it makes
        demo.on_order_created: (charge, [(demo.validate_order, {"data": data}, order),
                                         (demo.charge_payment, {"order": order}, charge)]),
        demo.on_order_paid: (tracking, [(demo.create_shipment, {"order_id": "@N@"}, tracking)]),
        demo.on_order_shipped: (note, [(demo.send_shipping_notification,
                                        {"order_id": "@N@", "tracking": "'@T@'"}, note)]),
    }  # fmt: skip

    def span(i, fn, args, outcome):  # outcome: a result's repr, or the failure
        return dict(id=i, parent=None if i == 0 else 0, name=fn.__qualname__, module=fn.__module__,
                    file=demo.__file__, line=fn.__code__.co_firstlineno, start_us=40 * i,
                    duration_us=900 - 300 * i, args=args,
                    **{"error" if outcome is failure else "result": outcome})  # fmt: skip

    rows = []
    for handler, (result, inner) in calls.items():
        # Only the first step fails (PaymentDeclined in charge_payment, its last call).
        for failed in (False, True) if handler is demo.on_order_created else (False,):
            spans = [
                span(0, handler, {"event": f"<Event data={data}>"}, failure if failed else result)
            ]
            for i, (fn, args, value) in enumerate(inner, 1):
                spans.append(span(i, fn, args, failure if failed and i == len(inner) else value))
            doc = dict(format=1, spans=spans, span_count=len(spans), dropped_spans=0)
            doc.update(is_truncated=False, limits={"max_spans": 5000, "max_bytes": 1024 * 1024})
            name = f"{handler.__module__}.{handler.__qualname__}"
            rows.append((name, failed, json.dumps(doc), len(spans)))
    return rows


def load(runs: int, now: datetime) -> None:
    """Drop, migrate and fill the database, printing how long each phase took."""
    import psycopg

    harness.recreate_database()
    workflows = round(runs / RUNS_PER_WORKFLOW)
    cumulative, cases = 0.0, []
    for fates in (FATES, IN_FLIGHT):
        for fate, share in fates:
            cumulative += share
            cases.append(f"WHEN u < {cumulative} THEN '{fate}'")
        if fates is FATES:
            cases.append("WHEN t0 < %(now)s::timestamptz - interval '1 hour' THEN 'ok'")
    params = dict(now=now, w=workflows, error_type=ERROR_TYPE, error_message=ERROR_MESSAGE)
    params["traceback"] = TRACEBACK

    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        # A bulk load: foreign-key triggers off (the rows are consistent by construction), and the
        # secondary indexes built once at the end rather than maintained row by row, GIN above all.
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET maintenance_work_mem = '2GB'")
        indexes = conn.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid"
            " WHERE t.relname = ANY(%s) AND NOT i.indisprimary",
            [list(TABLES)],
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        for table, rows in [("bench_handlers", handler_rows()), ("bench_traces", trace_rows())]:
            conn.execute(f"CREATE TEMP TABLE {table} ({LOOKUPS[table]})")
            conn.cursor().executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s)", rows)

        start = time.perf_counter()
        conn.execute("SELECT setseed(0.4242)")  # the same orders and fates on every load
        for label, sql in [
            ("workflows", WORKFLOWS_SQL.replace("@CASES@", " ".join(cases))),
            ("events", EVENTS_SQL),
            ("runs", RUNS_SQL),
            ("traces", TRACES_SQL),
        ]:
            phase = time.perf_counter()
            conn.execute(sql, params if "%(" in sql else None)
            print(f"load {label}: {time.perf_counter() - phase:.1f} s", flush=True)
        builds = []
        for name, sql in indexes:  # exactly the definitions the migrations made
            phase = time.perf_counter()
            conn.execute(sql)
            builds.append((time.perf_counter() - phase, name))
        slowest = ", ".join(f"{name} {seconds:.1f} s" for seconds, name in sorted(builds)[-3:])
        print(f"load {len(builds)} indexes: {sum(t for t, _ in builds):.1f} s ({slowest})")
        # VACUUM as well as ANALYZE: on an established database autovacuum has set the hint bits
        # and the visibility map (index-only scans); otherwise the first timed reads pay for it.
        phase = time.perf_counter()
        for table in TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")
        print(f"load vacuum analyze: {time.perf_counter() - phase:.1f} s")
        print(f"load total: {time.perf_counter() - start:.1f} s ({workflows} workflows)")


def print_sizes() -> None:
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(
                f"SELECT count(*), pg_size_pretty(pg_total_relation_size('{table}')),"
                f" pg_size_pretty(pg_relation_size('{table}')),"
                f" pg_size_pretty(pg_indexes_size('{table}')) FROM {table}"
            )
            rows, total, heap, indexes = cursor.fetchone()
            print(f"{table}: {rows} rows, {total} total ({heap} heap, {indexes} indexes)")


# Measuring


def htmx(target: str = "") -> dict:
    """htmx's headers; "Load older runs" targets a <tr> without an id, so sends no HX-Target."""
    return {"HTTP_HX_REQUEST": "true", **({"HTTP_HX_TARGET": target} if target else {})}


def requests(client: Client, now: datetime) -> list[tuple[str, str, dict]]:
    """(label, URL, headers) of every request to time, with real ids and cursors."""
    from hotapp.filters import encode_cursor
    from hotapp.models import Run

    def runs(label, params, **headers):
        return (label, "/?" + urlencode(params, doseq=True), headers)

    def events(label, params, **headers):
        return (label, "/events/?" + urlencode(params, doseq=True), headers)

    first = client.get("/").content.decode()  # page 2 as a browser reaches it: the link's URL
    page2 = html.unescape(re.search(r'href="(\?[^"]*after=[^"]*)"', first).group(1))
    total = Run.objects.count()
    deep = "?after=" + encode_cursor(
        *Run.objects.newest_first().values_list("created_at", "id")[total // 2]
    )
    retry = Run.objects.filter(  # attempt 2 of a workflow that then completed: a full lineage
        attempt=2, status="succeeded", created_at__lt=now - timedelta(days=DAYS // 2)
    ).newest_first()[0]
    fmt = "%Y-%m-%dT%H:%M"
    since, until = (now - timedelta(days=2)).strftime(fmt), (now - timedelta(days=1)).strftime(fmt)
    region, card = htmx("runs-region"), '"card network"'
    return [
        ("runs list", "/", {}),
        ("runs list (htmx runs-region)", "/", region),
        ("runs page 2", "/" + page2, {}),
        ("runs page 2 (htmx rows)", "/" + page2, htmx()),
        (f"runs deep page ({total // 2} back)", "/" + deep, {}),
        ("runs deep page (htmx rows)", "/" + deep, htmx()),
        runs("runs status=failed", {"status": "failed"}),
        runs("runs status=failed (htmx runs-region)", {"status": "failed"}, **region),
        runs("runs status=failed_attempt (all)", {"status": "failed_attempt"}),
        runs("runs status=queued+running", {"status": ["queued", "running"]}),
        runs("runs function=on_order_paid", {"function": "hotapp.demo.handlers.on_order_paid"}),
        runs("runs event_type=order:shipped", {"event_type": "order:shipped"}),
        runs("runs trigger=event", {"trigger": "event"}),
        runs("runs trigger=manual (none)", {"trigger": "manual"}),
        runs("runs since 2 days until 1 day ago", {"since": since, "until": until}),
        runs("runs q=order_id:4242", {"q": "order_id:4242"}),
        runs("runs q=customer.email:...4242", {"q": "customer.email:customer4242@example.com"}),
        runs("runs q=order_id:999999999 (no match)", {"q": "order_id:999999999"}),
        runs("runs q=customer4242", {"q": "customer4242"}),
        runs("runs q=customer4242 (htmx runs-region)", {"q": "customer4242"}, **region),
        runs('runs q="card network"', {"q": card}),
        runs("runs q=customer4242 status=failed", {"q": "customer4242", "status": "failed"}),
        # A word many runs hold, under a filter that excludes all of them.
        runs('runs q="card network" status=succeeded', {"q": card, "status": "succeeded"}),
        ("run detail (retried run)", f"/runs/{retry.id}/", {}),
        ("run detail (htmx run-live)", f"/runs/{retry.id}/", htmx("run-live")),
        ("run trace.json", f"/runs/{retry.id}/trace.json", {}),
        ("events list", "/events/", {}),
        ("events list (htmx events-region)", "/events/", htmx("events-region")),
        events("events type=order:paid", {"type": "order:paid"}),
        events("events handled=yes", {"handled": "yes"}),
        events("events handled=no (none)", {"handled": "no"}),
        events("events q=order_id:4242", {"q": "order_id:4242"}),
        events("events q=customer4242", {"q": "customer4242"}),
        events("events q=mug (every order:created)", {"q": "mug"}),
        ("event detail", f"/events/{retry.event_id}/", {}),
        ("overview", "/overview/", {}),
        ("tasks list", "/tasks/", {}),
        ("schedules", "/schedules/", {}),
        # Steady state: each scrape counts the attempts finished since the one before.
        ("metrics", "/metrics", {}),
    ]


def measure(client: Client, url: str, headers: dict) -> tuple[list[float], int, int]:
    """Timings in ms of TIMED calls after WARMUP; the status code and the number of queries."""
    with CaptureQueriesContext(connection) as queries:  # on a warm-up call: not timed
        status = client.get(url, **headers).status_code
    count = len(queries)  # now: the next request empties the connection's query log
    for _ in range(WARMUP - 1):
        client.get(url, **headers)
    samples = []
    for _ in range(TIMED):
        start = time.perf_counter()
        client.get(url, **headers)
        samples.append((time.perf_counter() - start) * 1000)
    return samples, status, count


def p95(samples: list[float]) -> float:
    return sorted(samples)[-(-len(samples) * 95 // 100) - 1]  # nearest rank: 29th of 30


def measure_metrics_window(client: Client, now: datetime, hours: float) -> None:
    """/metrics when its window holds `hours` of finished attempts (a first scrape long after
    the last, or Prometheus down for a while): the window is re-opened before each call."""
    from django.utils import timezone

    from hotapp import metrics

    since = now - timedelta(hours=hours)
    metrics.collector.since = since
    client.get("/metrics")  # warm-up
    samples = []
    for _ in range(TIMED):
        metrics.collector.since = since
        start = time.perf_counter()
        client.get("/metrics")
        samples.append((time.perf_counter() - start) * 1000)
    metrics.collector.since = since
    counted = metrics.collector.count_finished(timezone.now())
    label = f"metrics, a {hours:g} h window ({counted} attempts)"
    print(
        f"{label:<42} p50 {statistics.median(samples):7.1f} ms  p95 {p95(samples):7.1f} ms",
        flush=True,
    )


def explain_slow(client: Client, label: str, url: str, headers: dict) -> None:
    """Print every statement of one more call, and the plan of its slowest."""
    with CaptureQueriesContext(connection) as queries:
        client.get(url, **headers)
    print(f"\n== {label}: GET {url} {' '.join(f'{k}={v}' for k, v in headers.items())}")
    for query in queries:
        print(f"  [{float(query['time']) * 1000:8.1f} ms] {query['sql']}")
    slowest = max(queries, key=lambda q: float(q["time"]))
    print(f"  EXPLAIN (ANALYZE, BUFFERS) of the slowest ({float(slowest['time']) * 1000:.1f} ms):")
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + slowest["sql"])
        for (line,) in cursor.fetchall():
            print("    " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="measure an already loaded database")
    args = parser.parse_args()

    configure()
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    now = timezone.now()
    if not args.reuse:
        load(args.runs, now)
    print_sizes()

    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_superuser": True, "is_staff": True}
    )
    client = Client()
    client.force_login(user)
    slow = []
    print(f"\n{WARMUP} warm-up + {TIMED} timed calls each; * = p95 over {SLOW_MS:.0f} ms")
    for label, url, headers in requests(client, now):
        samples, status, queries = measure(client, url, headers)
        high = p95(samples)
        note = "" if status == 200 else f"  HTTP {status}"
        print(
            f"{label:<42} p50 {statistics.median(samples):7.1f} ms  p95 {high:7.1f} ms"
            f"  {queries:2d} queries{note}{' *' if high > SLOW_MS else ''}",
            flush=True,
        )
        if high > SLOW_MS:
            slow.append((label, url, headers))
    for hours in (1, 24):
        measure_metrics_window(client, timezone.now(), hours)
    for label, url, headers in slow:
        explain_slow(client, label, url, headers)


if __name__ == "__main__":
    main()
