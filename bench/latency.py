"""Latency: from send() to the handler starting, at a steady rate (open loop, not burn-down).

    python bench/latency.py [--rate 100] [--seconds 20] [--concurrency 2]

Events are sent on a fixed timetable (the i-th at start + i/rate, whatever happened before), to
one `celery -A hotproject worker` (prefork). Latency is the run's started_at minus its created_at
(both stamped on this machine's clock: at send() and at the claim). Prints p50/p90/p99/max;
asserts nothing. Goal: p50 <= 5 ms, p99 <= 25 ms.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import harness  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    harness.configure()
    harness.recreate_database()
    from hotapp.models import Run, RunStatus
    from runtime import send

    total = int(args.rate * args.seconds)
    with harness.workers(concurrency=args.concurrency):
        send("bench:ping", {"n": -1})  # warm up
        harness.wait_until(lambda: Run.objects.filter(status=RunStatus.SUCCEEDED).exists(), 60)
        harness.reset_state()
        send_ms = []
        start = time.perf_counter()
        for i in range(total):
            due = start + i / args.rate
            time.sleep(max(0.0, due - time.perf_counter()))
            t = time.perf_counter()
            send("bench:ping", {"n": i})
            send_ms.append((time.perf_counter() - t) * 1000)
        lag = time.perf_counter() - (start + (total - 1) / args.rate)
        done = Run.objects.filter(status=RunStatus.SUCCEEDED)
        harness.wait_until(lambda: done.count() == total, timeout=600, poll=0.2)
    rows = Run.objects.values_list("created_at", "started_at", "finished_at")
    start_ms = [(s - c).total_seconds() * 1000 for c, s, _ in rows]
    done_ms = [(f - c).total_seconds() * 1000 for c, _, f in rows]
    print(
        f"{total} events at {args.rate:.0f}/s over {args.seconds:.0f} s "
        f"(sender finished {lag * 1000:.0f} ms behind its timetable)"
    )
    for label, values in (
        ("send() call", send_ms),
        ("send -> handler start", start_ms),
        ("send -> run finished", done_ms),
    ):
        print(
            f"{label:22s} p50 {percentile(values, 50):6.1f} ms  p90 {percentile(values, 90):6.1f}"
            f" ms  p99 {percentile(values, 99):6.1f} ms  max {max(values):6.1f} ms  "
            f"mean {statistics.fmean(values):6.1f} ms"
        )


if __name__ == "__main__":
    main()
