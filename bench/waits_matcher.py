"""How long one pass of the scheduler's matcher (runtime.waits.resolve_events) takes with 500
open event waits: with no event of their type, and with 100,000 non-matching ones since they
began (after VACUUM ANALYZE, as autovacuum would leave the table and its GIN index).

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
waits.resolve_events()  # warm
for n in (0, 100_000):
    if n:
        Event.objects.bulk_create(
            (Event(type="bench:paid", data={"order": -k - 1}, stream_id=uuid.uuid4(),
                   created_at=now - timedelta(seconds=k % 500)) for k in range(n)),
            batch_size=5000,
        )  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE hotapp_event")
    began = time.perf_counter()
    resolved = waits.resolve_events()
    ms = (time.perf_counter() - began) * 1000
    print(f"500 open event waits, {n} non-matching events since: {ms:.1f} ms a pass ({resolved})")
Task.objects.all().delete()
Event.objects.filter(type="bench:paid").delete()
