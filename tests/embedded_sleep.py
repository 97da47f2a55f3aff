"""Run by tests/test_waits.py in a subprocess: the embedded default (SQLite, an in-process
worker and scheduler, the in-memory broker) runs a task that sleeps durably."""

import json
import sys

import django

django.setup()

from django.core.management import call_command  # noqa: E402

from runtime import embedded, start  # noqa: E402
from tests import task_handlers  # noqa: E402

call_command("migrate", verbosity=0)
running = embedded.start()
try:
    handle = start(task_handlers.charges_sleeps_then_ships, {"log": sys.argv[1], "seconds": 1})
    result = handle.result(timeout=60)
    from hotapp.models import TaskWait  # noqa: E402

    waits = list(TaskWait.objects.values_list("key", "outcome"))
    print(json.dumps({"result": result, "waits": waits}))
finally:
    running.stop()
