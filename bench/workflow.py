"""Workflow throughput: Hot against plain Celery, in the same run on the same machine.

    python bench/workflow.py [--sizes 2000,20000] [--concurrency 2]

The 3-step order workflow (bench/handlers.py; bench/baseline.py for Celery) with trivial work,
N workflows sent as fast as one process can, timed from the first send to the last completion:
1. Hot: PostgreSQL + Redis + `celery -A hotproject worker` (prefork), inputs, results, traces kept.
2. Celery chained with .delay(), results stored by django-celery-results in PostgreSQL.
3. Celery chained with .delay(), no result storage.
Prints workflows/s, steps/s and the ratios; first how fast the sending process alone goes for
each system (no worker running) and the SQL statements Hot makes per step; asserts nothing.
"""

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import harness  # noqa: E402

ROOT = harness.ROOT


def hot_throughput(n: int, concurrency: int, label: str = "hot", **worker_env: str) -> float:
    from hotapp.models import Run, RunStatus
    from runtime import send

    harness.reset_state()
    worker_env.setdefault("DJANGO_SETTINGS_MODULE", "hotproject.settings")
    with harness.workers(concurrency=concurrency, **worker_env):
        send("bench:order:created", {"order_id": 0, "items": [{"price": 1}]})  # warm up
        harness.wait_until(lambda: Run.objects.filter(status=RunStatus.SUCCEEDED).count() == 3, 60)
        harness.reset_state()
        commits_before = committed_transactions()
        start = time.perf_counter()
        for i in range(1, n + 1):
            send("bench:order:created", {"order_id": i, "items": [{"price": 10}, {"price": 5}]})
        sent = time.perf_counter()
        done = Run.objects.filter(
            function="bench.handlers.bench_order_shipped", status=RunStatus.SUCCEEDED
        )
        end = harness.wait_until(lambda: done.count() == n, timeout=3600, poll=0.25)
    time.sleep(1.5)  # PostgreSQL publishes a backend's counters within a second
    # Every transaction of the run: n sends, the steps' claims and completions, and the
    # benchmark's own polling (a few per second), which is subtracted out roughly.
    commits = committed_transactions() - commits_before - int((end - start) / 0.25) - 2
    print(f"{label}: the {n} send() calls took {sent - start:.2f} s", flush=True)
    print(
        f"{label}: {(commits - n) / (3 * n):.2f} database transactions per step "
        f"(+1 per workflow for send()), design budget 2",
        flush=True,
    )
    return report(label, n, end - start)


def committed_transactions() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return cursor.fetchone()[0]


def celery_throughput(n: int, concurrency: int, store_results: bool) -> float:
    import redis

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.baseline_settings",
        "BENCH_STORE_RESULTS": "1" if store_results else "0",
    }
    counter = redis.Redis.from_url(harness.REDIS_URL)
    harness.reset_state()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE django_celery_results_taskresult")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.baseline",
            "worker",
            "--pool=prefork",
            f"--concurrency={concurrency}",
            "-Q",
            "baseline",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "--loglevel=WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # The sender runs in a child process with the same settings as the worker.
    sender = (
        "import sys; from bench.baseline import order_created\n"
        "order_created.delay({'order_id': 0, 'items': [{'price': 1}]})\n"
        "sys.stdin.readline()\n"
        "for i in range(1, int(sys.argv[1]) + 1):\n"
        "    order_created.delay({'order_id': i, 'items': [{'price': 10}, {'price': 5}]})\n"
    )
    try:
        feeder = subprocess.Popen(
            [sys.executable, "-c", sender, str(n)], cwd=ROOT, env=env, stdin=subprocess.PIPE
        )
        harness.wait_until(lambda: counter.get("baseline:done") == b"1", 60)  # warmed up
        counter.delete("baseline:done")
        start = time.perf_counter()
        feeder.stdin.write(b"go\n")
        feeder.stdin.flush()
        end = harness.wait_until(
            lambda: int(counter.get("baseline:done") or 0) >= n, timeout=3600, poll=0.25
        )
        feeder.wait(60)
    finally:
        proc.terminate()
        proc.wait(30)
    label = "celery+django-celery-results" if store_results else "celery, no results"
    return report(label, n, end - start)


def senders_alone(n: int) -> None:
    """How fast one process sends with no worker running: Hot's send() (a committed event and
    run, then a doorbell) against Celery's .delay() (a broker message). The sender is one
    process in every measurement above, so its rate bounds every throughput figure."""
    from bench.baseline import order_created
    from runtime import send

    harness.reset_state()
    start = time.perf_counter()
    for i in range(n):
        send("bench:order:created", {"order_id": i, "items": [{"price": 10}, {"price": 5}]})
    hot = time.perf_counter() - start
    harness.reset_state()
    start = time.perf_counter()
    for i in range(n):
        order_created.delay({"order_id": i, "items": [{"price": 10}, {"price": 5}]})
    celery = time.perf_counter() - start
    harness.reset_state()
    print(
        f"sender alone, no workers, {n} calls: hot send() {n / hot:.0f}/s "
        f"({1000 * hot / n:.2f} ms each), celery .delay() {n / celery:.0f}/s "
        f"({1000 * celery / n:.2f} ms each)",
        flush=True,
    )


def statements_per_step() -> None:
    """SQL statements on the happy path, BEGIN and COMMIT included, counted by Django's query
    log in this process, which runs the worker's own code (executor.drain) on one workflow alone
    and on 20 at once. The second `drain()` that finds nothing is counted too."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from runtime import executor, send

    for count in (1, 20):
        harness.reset_state()
        with CaptureQueriesContext(connection) as sending:
            for i in range(count):
                send("bench:order:created", {"order_id": i, "items": [{"price": 10}]})
        with CaptureQueriesContext(connection) as running:
            while executor.drain():
                pass
        first_words = Counter(q["sql"].split()[0] for q in running.captured_queries)
        kinds = ", ".join(f"{n} {word}" for word, n in sorted(first_words.items()))
        print(
            f"statements, {count} workflow(s) at once: {len(sending) / count:.2f} per send(), "
            f"{len(running) / (3 * count):.2f} per step ({kinds})",
            flush=True,
        )
    harness.reset_state()


def report(label: str, n: int, seconds: float) -> float:
    print(
        f"{label:30s} N={n:6d}: {seconds:7.2f} s  {n / seconds:7.1f} workflows/s  "
        f"{3 * n / seconds:7.1f} steps/s",
        flush=True,
    )
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    harness.configure(DJANGO_SETTINGS_MODULE="bench.baseline_settings")
    harness.recreate_database()
    senders_alone(2000)
    statements_per_step()
    for n in (int(s) for s in args.sizes.split(",")):
        hot = hot_throughput(n, args.concurrency)
        stored = celery_throughput(n, args.concurrency, store_results=True)
        bare = celery_throughput(n, args.concurrency, store_results=False)
        print(
            f"N={n}: hot / celery+results = {hot / stored:.2f}x (goal >= 2), "
            f"hot / celery no results = {hot / bare:.2f}x (goal >= 0.7)",
            flush=True,
        )


if __name__ == "__main__":
    main()
