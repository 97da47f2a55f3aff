"""Flow control on the embedded default's SQLite, run by tests/test_flow_control_sqlite.py in a
process of its own (the suite's settings are PostgreSQL's). Exits non-zero on a failed check."""

import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.update(
    DJANGO_SETTINGS_MODULE="hotproject.settings",
    HOT_HANDLER_MODULES="tests.flow_handlers",
    HOT_LOG_LEVEL="WARNING",
)
for name in ("DATABASE_URL", "REDIS_URL"):
    os.environ.pop(name, None)

import django  # noqa: E402

django.setup()
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from hotapp.models import Run  # noqa: E402
from runtime import executor, holds, send  # noqa: E402
from runtime.flow_claim import claim_flow  # noqa: E402

call_command("migrate", verbosity=0)
for key in "aaab":
    send("flow:one-at-a-time", {"key": key})
for n in range(3):
    send("flow:debounced", {"key": "k", "n": n})
for n in range(5):
    send("flow:rated", {"n": n})

claimed = claim_flow("w", 20)
by_function = sorted((r.function.rsplit(".", 1)[1], r.flow_key) for r in claimed)
assert (
    by_function
    == [("one_at_a_time", "a"), ("one_at_a_time", "b")] + [("three_every_two_seconds", "")] * 3
), by_function
waiting = Run.objects.filter(status="queued")
assert sorted(waiting.values_list("wait_reason", flat=True)) == sorted(
    ["concurrency", "concurrency", "debounce", "rate_limit", "rate_limit"]
)
executor._run_batch([r for r in claimed if "one_at_a_time" in r.function], "w")
assert [r.flow_key for r in claim_flow("w", 20)] == ["a"]
holds.release_due(timezone.now() + timedelta(seconds=5))
assert [r.input for r in claim_flow("w", 20)] == [{"key": "k", "n": 2}]
print("ok")
