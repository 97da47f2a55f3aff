"""What failure alerts add to a worker's happy path.

    python bench/alert_overhead.py [--batches 100000]

A worker's completion calls runtime.alerts.record_claimed for every committed batch; for a batch
of succeeded runs it must cost next to nothing, with or without channels configured (it makes no
query: tests/test_alerts.py checks that). Prints the time per batch of 20; asserts nothing.
Needs no database: the runs are built in memory.
"""

import argparse
import os
import sys
import timeit
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotproject.settings")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=100_000)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    from hotapp.models import Run
    from runtime import alerts

    runs = [Run(id=uuid.uuid4(), function="f", status="succeeded") for _ in range(20)]
    changed = {run.id for run in runs}
    configured = [{"name": "ops", "webhook": "http://x/"}, {"name": "oncall", "email": ["a@b"]}]
    for label, channels in (("no channels", []), ("2 channels", configured)):
        settings.HOT = {**settings.HOT, "ALERT_CHANNELS": channels}
        seconds = timeit.timeit(lambda: alerts.record_claimed(runs, changed), number=args.batches)
        per_batch = seconds / args.batches * 1e6
        print(f"record_claimed, a succeeded batch of 20, {label}: {per_batch:.2f} µs per batch")


if __name__ == "__main__":
    main()
