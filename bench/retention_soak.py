"""Does the disk stay flat under steady traffic with retention on?

    python bench/retention_soak.py [--minutes 5] [--rate 100] [--retention-seconds 60]

Writes a steady stream of finished work straight into the database, as the workers would leave
it: every second `rate` events, each with its run (succeeded, with a ~2 KB trace and an audit
entry on one in fifty; one in twenty a failed first attempt and its successful retry). The
retention is `--retention-seconds` (HOT_RETENTION_DAYS as a fraction of a day), and the real
scheduler loop (`runtime.scheduler.run_forever`) runs in a thread, purging every
`--purge-every` seconds in bounded passes. Every `--sample` seconds it prints the rows kept and
`pg_total_relation_size` of the run, event and trace tables (with their indexes and TOAST),
their dead tuples and (auto)vacuum count. PostgreSQL reuses the space of deleted rows only after
(auto)vacuum has marked it free, so the size grows for a while after the first purge and then
levels off; the last lines compare the size once the retention window is full with the end.
Where the server runs with autovacuum off (the shared test server does), the bench runs a plain
VACUUM of the tables every `--vacuum-every` seconds in its place and says so.

Its own database `hot_bench_retention` (BENCH_RETENTION_DATABASE_URL), dropped and re-created.
Prints plain lines; asserts nothing.
"""

import argparse
import os
import random
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import harness  # noqa: E402

harness.DATABASE_URL = os.environ.get(
    "BENCH_RETENTION_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/hot_bench_retention"
)
TABLES = ("hotapp_run", "hotapp_event", "hotapp_runtrace", "hotapp_auditentry")
TRACE_SPANS = 12  # about 2 KB of trace document a run


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--rate", type=int, default=100, help="events (and runs) a second")
    parser.add_argument("--retention-seconds", type=float, default=60)
    parser.add_argument("--purge-every", type=float, default=5, help="seconds between passes")
    parser.add_argument("--sample", type=float, default=15, help="seconds between samples")
    parser.add_argument(
        "--vacuum-every",
        type=float,
        default=30,
        help="when the server's autovacuum is off: seconds between the bench's own plain VACUUMs "
        "of the tables, standing in for it (0: none, to see the disk grow without)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse()
    harness.configure(
        HOT_RETENTION_DAYS=str(args.retention_seconds / 86400),
        HOT_PURGE_INTERVAL_SECONDS=str(args.purge_every),
        HOT_LOG_LEVEL="WARNING",
    )
    harness.recreate_database()

    from django.db import close_old_connections, connection

    from runtime import scheduler

    stop = threading.Event()
    purger = threading.Thread(target=scheduler.run_forever, args=(stop,), daemon=True)
    purger.start()
    print(
        f"rate {args.rate} runs/s, retention {args.retention_seconds:g} s, purge every "
        f"{args.purge_every:g} s, {args.minutes:g} min"
    )
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0] == "on"
    vacuum_every = 0.0 if autovacuum else args.vacuum_every
    print(
        "autovacuum is on"
        if autovacuum
        else "autovacuum is off on this server: "
        + (
            f"the bench runs a plain VACUUM of the tables every {vacuum_every:g} s instead"
            if vacuum_every
            else "nothing frees the deleted rows' space (--vacuum-every 0)"
        )
    )
    print(
        f"{'t (s)':>6} {'runs':>8} {'events':>8} "
        + " ".join(f"{t.removeprefix('hotapp_') + ' MB':>14}" for t in TABLES)
        + f" {'total MB':>9} {'dead rows':>10} {'vacuums':>8}"
    )
    started = time.monotonic()
    deadline = started + args.minutes * 60
    next_vacuum = started + vacuum_every
    next_sample = started
    samples: list[tuple[float, float]] = []
    written = 0
    try:
        while time.monotonic() < deadline:
            tick = time.monotonic()
            write_second(args.rate)
            written += args.rate
            if vacuum_every and tick >= next_vacuum:
                with connection.cursor() as cursor:
                    for table in TABLES:
                        cursor.execute(f"VACUUM {table}")
                next_vacuum += vacuum_every
            if tick >= next_sample:
                elapsed = tick - started
                samples.append((elapsed, sample(elapsed)))
                next_sample += args.sample
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    finally:
        stop.set()
        purger.join(30)
        close_old_connections()
    elapsed = time.monotonic() - started
    samples.append((elapsed, sample(elapsed)))
    full = [mb for t, mb in samples if t >= args.retention_seconds + 2 * 60]
    print(f"wrote {written} runs in {elapsed:.0f} s ({written / elapsed:.0f}/s)")
    if len(full) >= 2:
        print(
            f"total size once the window was full (+2 min for autovacuum): {full[0]:.1f} MB; "
            f"at the end {full[-1]:.1f} MB; max {max(full):.1f} MB; "
            f"growth {100 * (full[-1] - full[0]) / full[0]:+.1f} %"
        )
    else:
        print("too short to compare: run for retention + 3 minutes or more")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM hotapp_run WHERE created_at < now() - %s",
            [timedelta(seconds=args.retention_seconds + 2 * args.purge_every + 5)],
        )
        print(f"runs older than the retention (+2 passes) still stored: {cursor.fetchone()[0]}")


def write_second(rate: int) -> None:
    """One second of finished traffic, in one transaction."""
    from django.db import transaction
    from django.utils import timezone

    from hotapp.ids import uuid7
    from hotapp.models import AuditEntry, Event, Run, RunTrace

    now = timezone.now()
    events, runs, traces, audits = [], [], [], []
    for i in range(rate):
        event = Event(
            id=uuid7(),
            type="order:created",
            data={"order_id": i, "customer": {"email": f"c{i}@example.com"}, "items": [1, 2, 3]},
            created_at=now,
            is_handled=True,
        )
        event.stream_id = event.id
        events.append(event)
        common = dict(
            function="bench.handlers.step_one",
            trigger="event",
            event=event,
            event_type=event.type,
            stream_id=event.stream_id,
            input=event.data,
            created_at=now,
            updated_at=now,
            started_at=now,
            finished_at=now,
        )
        first = Run(id=uuid7(), status="succeeded", result={"ok": True, "n": i}, **common)
        if random.random() < 0.05:
            first.status, first.result, first.is_superseded = "failed", None, True
            first.error_type, first.error_message = "PaymentDeclined", "card network timed out"
            retry = Run(
                id=uuid7(),
                status="succeeded",
                result={"ok": True},
                attempt=2,
                origin_run=first,
                **common,
            )
            runs.append(retry)
            traces.append(RunTrace(run=retry, data=trace_doc(), span_count=TRACE_SPANS))
        runs.insert(0, first)
        traces.append(RunTrace(run=first, data=trace_doc(), span_count=TRACE_SPANS))
        if random.random() < 0.02:
            audits.append(AuditEntry(action="retry", run=first, via="page", username="alice"))
    with transaction.atomic():
        Event.objects.bulk_create(events)
        Run.objects.bulk_create(sorted(runs, key=lambda r: r.attempt))
        RunTrace.objects.bulk_create(traces)
        AuditEntry.objects.bulk_create(audits)


def trace_doc() -> dict:
    spans = [
        {
            "id": n,
            "parent": None if n == 0 else 0,
            "name": f"step_{n}",
            "module": "app.handlers",
            "file": "/srv/app/handlers.py",
            "line": 10 + n,
            "start_us": n * 100,
            "duration_us": 80,
            "args": [["order", "{'order_id': 42, 'items': [1, 2, 3]}"]],
            "result": "{'ok': True}",
        }
        for n in range(TRACE_SPANS)
    ]
    return {"format": 1, "spans": spans, "span_count": TRACE_SPANS, "dropped_spans": 0}


def sample(elapsed: float) -> float:
    from django.db import connection

    with connection.cursor() as cursor:
        sizes = []
        for table in TABLES:
            cursor.execute("SELECT pg_total_relation_size(%s)", [table])
            sizes.append(cursor.fetchone()[0] / 1e6)
        cursor.execute("SELECT count(*) FROM hotapp_run")
        runs = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM hotapp_event")
        events = cursor.fetchone()[0]
        cursor.execute(
            "SELECT sum(n_dead_tup), sum(autovacuum_count + vacuum_count) FROM pg_stat_user_tables "
            "WHERE relname = ANY(%s)",
            [list(TABLES)],
        )
        dead, autovacuums = cursor.fetchone()
    total = sum(sizes)
    print(
        f"{elapsed:6.0f} {runs:8d} {events:8d} "
        + " ".join(f"{size:14.1f}" for size in sizes)
        + f" {total:9.1f} {int(dead or 0):10d} {int(autovacuums or 0):8d}",
        flush=True,
    )
    return total


if __name__ == "__main__":
    main()
