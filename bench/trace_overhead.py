"""What execution tracing costs.

    python bench/trace_overhead.py [--calls 1000] [--workflows 2000]

1. A handler that makes ~1,000 calls into user code, called directly: untraced vs traced.
2. The 3-step order workflow through PostgreSQL + Redis + a Celery worker (prefork, 2
   processes): completed workflows/s with HOT_TRACE=true vs HOT_TRACE=false.
Prints plain lines; asserts nothing.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import harness  # noqa: E402


def leaf(i):
    return i * 2


def middle(i):
    return leaf(i) + 1


def handler_with_calls(n):
    total = 0
    for i in range(n // 2):
        total += middle(i)  # two user calls per iteration
    return total


def micro(calls: int, repeats: int = 30) -> None:
    from runtime.trace_recorder import Tracer, UserCode

    def once(traced: bool) -> float:
        tracer = Tracer(UserCode([], []), max_spans=100_000, max_bytes=10**9) if traced else None
        start = time.perf_counter()
        if tracer:
            tracer.start()
        try:
            handler_with_calls(calls)
        finally:
            if tracer:
                tracer.stop()
        if tracer:
            tracer.document()
        return time.perf_counter() - start

    for traced in (False, True):  # warm up both paths
        once(traced)
    plain = statistics.median(once(False) for _ in range(repeats))
    traced = statistics.median(once(True) for _ in range(repeats))
    print(f"handler with {calls} calls, untraced: {plain * 1000:.3f} ms")
    print(
        f"handler with {calls} calls, traced:   {traced * 1000:.3f} ms "
        f"({(traced - plain) / calls * 1e6:.2f} us per traced call)"
    )


def workflow_throughput(n: int, trace: bool) -> float:
    from bench.workflow import hot_throughput

    label = f"hot, tracing {'on' if trace else 'off'}"
    return hot_throughput(n, 2, label=label, HOT_TRACE="true" if trace else "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--workflows", type=int, default=2000)
    args = parser.parse_args()

    harness.configure()
    micro(args.calls)
    harness.recreate_database()
    off = workflow_throughput(args.workflows, trace=False)
    on = workflow_throughput(args.workflows, trace=True)
    print(f"tracing costs {(1 - on / off) * 100:.1f}% of workflow throughput")


if __name__ == "__main__":
    main()
