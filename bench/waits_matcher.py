"""How long one pass of the scheduler's matcher (runtime.waits.resolve_events) takes with 500
open event waits: its full pass (per wait, in the database: a process's first pass and one
every 5 minutes) with no event of their type and with 100,000 non-matching ones since they
began (after VACUUM ANALYZE, as autovacuum would leave the table and its GIN index), and its
every-second pass (only the events since the last, matched in Python) with 0, 100 and 1,000
new events.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<scratch db> \\
        DJANGO_SETTINGS_MODULE=hotproject.settings PYTHONPATH=. python bench/waits_matcher.py

It deletes every Task and every bench:paid event of that database: use a scratch one."""

import time
import uuid
from datetime import timedelta

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from hotapp.ids import uuid7  # noqa: E402
from hotapp.models import Event, Task, TaskWait  # noqa: E402
from runtime import waits  # noqa: E402

call_command("migrate", verbosity=0)
Task.objects.all().delete()
Event.objects.filter(type="bench:paid").delete()
now = timezone.now()
tasks = [
    Task(id=uuid7(), name="bench", stream_id=uuid.uuid4(), status="waiting") for _ in range(500)
]
Task.objects.bulk_create(tasks)
TaskWait.objects.bulk_create(
    TaskWait(task=t, key="#1", kind="event", event_type="bench:paid", match={"order": i},
             created_at=now - timedelta(minutes=10))
    for i, t in enumerate(tasks)
)  # fmt: skip


def timed_pass(full: bool) -> str:
    if full:
        waits._next_full_pass = 0.0  # the first pass in a process, and one every 5 minutes
    began = time.perf_counter()
    resolved = waits.resolve_events()
    return f"{(time.perf_counter() - began) * 1000:.1f} ms ({resolved} resolved)"


waits.resolve_events()  # warm
print(f"500 open event waits, no event of their type: full pass {timed_pass(True)}")
Event.objects.bulk_create(
    (Event(type="bench:paid", data={"order": -k - 1}, stream_id=uuid.uuid4(),
           created_at=now - timedelta(seconds=k % 500)) for k in range(100_000)),
    batch_size=5000,
)  # fmt: skip
with connection.cursor() as cursor:
    cursor.execute("VACUUM ANALYZE hotapp_event")
print(f"... 100,000 non-matching events since they began: full pass {timed_pass(True)}")
print(f"... and a pass with nothing new since the last: {timed_pass(False)}")
for new in (100, 1000):
    Event.objects.bulk_create(
        (Event(type="bench:paid", data={"order": -k - 1}, stream_id=uuid.uuid4(),
               created_at=timezone.now()) for k in range(new)),
    )  # fmt: skip
    print(f"... {new} new non-matching events since the last pass: {timed_pass(False)}")
Task.objects.all().delete()
Event.objects.filter(type="bench:paid").delete()
