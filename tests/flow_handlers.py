"""Flow-controlled handlers (tests/test_flow_control.py). They count what they do in Redis, so
that workers in other processes report to the test: how many ran at once per key, how many
times each event ran, and when each run was claimed."""

import time
from functools import cache

import redis
from django.conf import settings

from hotapp.models import Run
from runtime import Retry, current_run, on_event


@cache
def store() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@on_event("flow:concurrent", concurrency=2, key="data.customer")
def two_per_customer(event):
    r = store()
    running = f"flow:running:{event.data['customer']}"
    # INCR is atomic: the value is how many runs of this key are inside the handler now.
    r.rpush(f"flow:peaks:{event.data['customer']}", r.incr(running))
    r.hincrby("flow:ran", str(event.data["n"]), 1)
    time.sleep(event.data.get("sleep", 0.05))
    r.decr(running)
    return event.data["n"]


@on_event("flow:rated", rate_limit="3/2s")
def three_every_two_seconds(event):
    # The run's started_at is still its claim's time while it runs: the limit counts claims.
    claimed_at = Run.objects.values_list("started_at", flat=True).get(id=current_run().run_id)
    store().rpush("flow:starts", claimed_at.timestamp())
    store().hincrby("flow:rated", str(event.data["n"]), 1)
    return event.data["n"]


@on_event("flow:debounced", debounce="1s", key="data.key")
def debounced(event):
    return event.data


@on_event("flow:prioritised", priority="data.priority")
def prioritised(event):
    return event.data


@on_event("flow:one-at-a-time", concurrency=1, key="data.key", priority="data.priority")
def one_at_a_time(event):
    return event.data


@on_event("flow:flaky", concurrency=1, retry=Retry(2, delay=0.1))
def flaky_one_at_a_time(event):
    if current_run().attempt == 1:
        raise RuntimeError("first attempt fails")
    return "second attempt"
