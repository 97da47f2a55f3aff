"""The 3-step order workflow as plain Celery tasks chained with .delay(), for comparison.

BENCH_STORE_RESULTS=1 keeps every result in PostgreSQL through django-celery-results (what a
Django team reaching for Celery + Flower would run); otherwise results are not stored at all.
Step 3 counts finished workflows in Redis so the benchmark can tell when all are done.
"""

import os

import django
import redis
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.baseline_settings")
django.setup()

from django.conf import settings  # noqa: E402

app = Celery("baseline")
app.config_from_object("django.conf:settings", namespace="CELERY")
STORE = os.environ.get("BENCH_STORE_RESULTS") == "1"
app.conf.task_ignore_result = not STORE
app.conf.task_default_queue = "baseline"
counter = redis.Redis.from_url(settings.REDIS_URL)


def validate(data: dict) -> dict:
    return {"id": data["order_id"], "total": sum(i["price"] for i in data["items"])}


@app.task(name="baseline.order_created")
def order_created(data: dict) -> dict:
    order = validate(data)
    order_paid.delay({"order_id": order["id"], "amount": order["total"]})
    return order


@app.task(name="baseline.order_paid")
def order_paid(data: dict) -> dict:
    tracking = f"TRK{data['order_id']:08d}"
    order_shipped.delay({"order_id": data["order_id"], "tracking": tracking})
    return {"tracking": tracking}


@app.task(name="baseline.order_shipped")
def order_shipped(data: dict) -> dict:
    counter.incr("baseline:done")
    return {"notified": data["order_id"]}
