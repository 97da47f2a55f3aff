"""Flow control: throughput of one-step runs with a concurrency or rate limit in force, against
the same runs without flow control.

    python bench/flow.py [--runs 5000] [--concurrency 2]

Each scenario sends N events (one run each, trivial work) before the worker starts, then times
one `celery -A hotproject worker` (prefork) from its first claim to the last completion, with
PostgreSQL + Redis. Prints runs/s and database transactions per run (pg_stat_database) for:
no flow control; concurrency=4 on one key (not binding with 2 processes: the cost of the flow
claim itself); concurrency=1 per customer over 100 customers; concurrency=1 on one key (every
run waits for the one before: a bound, not a cost); and a rate limit too high to bind, per
customer. Asserts nothing.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import harness  # noqa: E402

SCENARIOS = [
    ("no flow control", "bench:flow:free"),
    ("concurrency=4, one key", "bench:flow:one-key"),
    ("concurrency=1 per customer (100)", "bench:flow:per-customer"),
    ("concurrency=1, one key", "bench:flow:serial"),
    ("rate_limit=100000/m per customer", "bench:flow:rated"),
]


def commits() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return cursor.fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    harness.configure(HOT_HANDLER_MODULES="bench.handlers,bench.flow_handlers")
    harness.recreate_database()
    from hotapp.models import Run, RunStatus
    from runtime import send

    print(f"{args.runs} one-step runs each, one prefork worker --concurrency={args.concurrency}")
    for label, event_type in SCENARIOS:
        harness.reset_state()
        from django.db import transaction

        with transaction.atomic():  # sent before the worker starts: a burn-down of the queue
            for n in range(args.runs):
                send(event_type, {"n": n, "customer": f"c{n % 100}"})
        done = Run.objects.filter(status=RunStatus.SUCCEEDED)
        before = commits()
        with harness.workers(concurrency=args.concurrency):
            harness.wait_until(lambda: Run.objects.exclude(started_at=None).exists(), 60, 0.005)
            start = time.perf_counter()
            end = harness.wait_until(
                lambda done=done: done.count() == args.runs, timeout=900, poll=0.05
            )
        # Each poll of this process is a transaction too: counted out (two per poll, roughly).
        spent = commits() - before
        seconds = end - start
        print(
            f"{label:36s} {args.runs / seconds:8.0f} runs/s   "
            f"{spent / args.runs:5.2f} transactions/run (this process's polls included)"
        )


if __name__ == "__main__":
    main()
