"""Worker memory: resident size of a worker's processes after 1k runs and after 100k.

    python bench/memory.py [--runs 100000] [--concurrency 2]

One-step runs (`bench:ping`, traced, results kept) through one `celery -A hotproject worker`
(prefork). Prints each process's VmRSS at 1k, 10k, 50k and the final count; growth past warm-up
would be a leak. Asserts nothing.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import harness  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    harness.configure()
    harness.recreate_database()
    from django.db import transaction

    from hotapp.models import Run, RunStatus
    from runtime import send

    marks = sorted({m for m in (1_000, 10_000, 50_000, args.runs) if m <= args.runs})
    done = Run.objects.filter(status=RunStatus.SUCCEEDED)
    sent = 0
    with harness.workers(concurrency=args.concurrency) as proc:
        time.sleep(3)
        children = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
            ).stdout.split()
        ]
        for mark in marks:
            while sent < mark:
                batch = min(500, mark - sent)
                with transaction.atomic():  # one commit per 500 sends keeps the sender cheap
                    for i in range(sent, sent + batch):
                        send("bench:ping", {"n": i})
                sent += batch
                # Stay at most a few thousand runs ahead of the worker.
                harness.wait_until(lambda s=sent: s - done.count() < 3000, timeout=3600, poll=0.5)
            harness.wait_until(lambda m=mark: done.count() >= m, timeout=3600, poll=0.5)
            sizes = ", ".join(f"child {pid} {rss_mib(pid):.1f} MiB" for pid in children)
            print(f"after {mark:7d} runs: main {rss_mib(proc.pid):.1f} MiB, {sizes}", flush=True)


if __name__ == "__main__":
    main()
