"""Handlers whose traces the tests inspect (tests/test_traces.py)."""

import asyncio
import collections
import dataclasses
import json
import os
import site
import threading
import time
from typing import NamedTuple

from django.utils.text import slugify

from runtime import current_run, on_event, trace


def add_tax(amount, rate=0.2):
    return round(amount * (1 + rate), 2)


def price(items):
    subtotal = sum(item["price"] for item in items)
    trace.value("subtotal", subtotal)
    return add_tax(subtotal)


@on_event("trace:nested")
def nested(event):
    return {"total": price(event.data["items"])}


def risky(n):
    if n < 0:
        raise ValueError(f"negative: {n}")
    return n


@on_event("trace:caught")
def caught(event):
    try:
        risky(-1)
    except ValueError as exc:
        trace.value("recovered_from", str(exc))
    return risky(2)


@on_event("trace:fails")
def fails(event):
    price(event.data["items"])
    risky(-5)


def countdown(n):
    while n > 0:
        yield add_tax(n, rate=0)
        n -= 1
    return "done"


@on_event("trace:generator")
def generator(event):
    return list(countdown(3))


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


@on_event("trace:recursive")
def recursive(event):
    return fib(event.data["n"])


def tiny(i):
    return i


@on_event("trace:many")
def many(event):
    for i in range(event.data["n"]):
        tiny(i)
    return event.data["n"]


def login(user, password, options):
    return {"user": user, "token": "s3cr3t-token"}


@on_event("trace:secrets")
def secrets(event):
    trace.value("api_key", "k-123")
    return login("alice", "hunter2", {"Authorization": "Bearer abc", "retries": 3})["user"]


class Unprintable:
    def __repr__(self):
        raise RuntimeError("no repr for you")


class Huge:
    def __repr__(self):
        return "H" * 1_000_000


def takes(odd, huge):
    return odd


@on_event("trace:odd-values")
def odd_values(event):
    takes(Unprintable(), Huge())
    return "ok"


async def fetch(n):
    await asyncio.sleep(0.001)
    return n * 2


@on_event("trace:async")
async def async_handler(event):
    return await fetch(21)


@on_event("trace:off", trace=False)
def untraced(event):
    return price([{"price": 1}])


# Two runs on two worker threads at the same moment (tests/test_traces.py).
both_running = threading.Barrier(2, timeout=20)


def step_of(who, i):
    return f"{who}-{i}"


@on_event("trace:concurrent")
def concurrent(event):
    who = event.data["who"]
    both_running.wait()
    for i in range(20):
        step_of(who, i)
        time.sleep(0.005)
    return who


def busy_step(i):
    time.sleep(0.02)
    return i


@on_event("trace:busy")
def busy(event):
    """Never checks for cancellation itself: the traced calls do."""
    for i in range(1500):
        busy_step(i)
    return "was never cancelled"


def takes_number(n):
    return n


@on_event("trace:huge-int")
def huge_int(event):
    takes_number(10**5000)  # repr() refuses ints over 4,300 digits
    return "ok"


@dataclasses.dataclass
class Credentials:
    user: str
    password: str


class Pair(NamedTuple):
    token: str
    n: int


def takes_objects(account, pair, options):
    return account


@on_event("trace:objects")
def objects(event):
    takes_objects(
        Credentials("alice", "hunter2"),
        Pair("tok-123", 1),
        collections.OrderedDict(secret_key="k-456", debug=True),
    )
    return "ok"


def takes_rows(rows, row):
    return row


@on_event("trace:queryset")
def queryset(event):
    from hotapp.models import Run

    run = Run.objects.get(id=current_run().run_id)
    takes_rows(Run.objects.filter(status="queued"), run)
    return "ok"


def defined_in(module: str, filename: str):
    """A function that looks, to the tracer, as if it came from `module` in `filename`."""
    namespace = {"__name__": module}
    exec(compile("def helper(x):\n    return x\n", filename, "exec"), namespace)
    return namespace["helper"]


from_dist_packages = defined_in("fakelib", "/usr/lib/python3/dist-packages/fakelib/core.py")
from_user_site = defined_in("userlib", os.path.join(site.getusersitepackages(), "userlib.py"))
vendored = defined_in("tests.vendored", os.path.join(os.path.dirname(__file__), "vendored.py"))


@on_event("trace:libraries")
def libraries(event):
    json.loads(json.dumps({"a": [1, 2]}))  # the standard library, in Python
    slugify("Hello World")  # site-packages
    from_dist_packages(1)
    from_user_site(2)
    vendored(3)
    return add_tax(1)


def charge(customer, payment):
    return {"charged": payment["amount"], "customer": customer["name"]}


@on_event("trace:checkout")
def checkout(event):
    charge(event.data["customer"], event.data["payment"])
    return {"ok": True, "session": {"token": "tok-RESULT-999"}}
