"""Handlers the tests send events to. The demo workflow (hotapp/demo/handlers.py) is loaded too."""

import asyncio
import time
from pathlib import Path

from hotapp.models import Run
from runtime import Retry, check_cancelled, current_run, on_event, send


class Boom(Exception):
    pass


@on_event("test:fanout")
def fanout_first(event):
    return "first"


@on_event("test:fanout")
def fanout_second(event):
    return "second"


@on_event("test:always-fails", retry=Retry(2, delay=0.01))
def always_fails(event):
    send("test:should-not-arrive", {"from": "always_fails"})
    raise Boom(f"attempt {current_run().attempt} failed")


@on_event("test:fails-once-after-send", retry=Retry(1, delay=0.01))
def fails_once_after_send(event):
    send("test:downstream", {"attempt": current_run().attempt})
    if current_run().attempt == 1:
        raise Boom("first attempt fails after sending")
    return "ok"


@on_event("test:downstream")
def downstream(event):
    return event.data


@on_event("test:should-not-arrive")
def should_not_arrive(event):
    return "this must never run"


@on_event("test:bad-result")
def bad_result(event):
    return {"when": object()}


@on_event("test:crash-once")
def crash_once(event):
    """Appends a line to a file per execution; the first execution hangs until it is killed."""
    log = Path(event.data["log"])
    with log.open("a") as f:
        f.write("start\n")
    if log.read_text().count("start") == 1:
        time.sleep(120)
    send("test:downstream", {"after": "crash"})
    return "recovered"


@on_event("test:cooperative")
def cooperative(event):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        check_cancelled()
        time.sleep(0.05)
    return "was never cancelled"


@on_event("test:fixed-by-hand")
def fixed_by_hand(event):
    """No automatic retry: the first attempt fails for good; a manual retry succeeds."""
    if current_run().attempt == 1:
        raise Boom("the card was declined (retry me by hand)")
    return {"charged": event.data["order_id"]}


@on_event("test:batch")
def batch_member(event):
    """Records each execution, so a test can count how often every run ran."""
    if "log" in event.data:
        with Path(event.data["log"]).open("a") as f:
            f.write(f"{current_run().run_id}\n")
    if "sleep" in event.data:
        time.sleep(event.data["sleep"])
    if "send" in event.data:
        send("test:downstream", event.data["send"])
    return event.data.get("n")


@on_event("test:many-sends")
def many_sends(event):
    for n in range(event.data["count"]):
        send("test:downstream", {"n": n})
    return event.data["count"]


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")


@on_event("test:unprintable-error")
def unprintable_error(event):
    raise Unprintable("the message cannot be shown")


@on_event("test:unstorable-error")
def unstorable_error(event):
    """PostgreSQL text holds neither NUL characters nor lone surrogates."""
    raise Boom("nul \x00 and lone \ud800 surrogate")


@on_event("test:sends-then-changes-it")
def sends_then_changes_it(event):
    data = {"items": [1]}
    send("test:downstream", data)
    data["items"].append(object())  # after send(): what was sent is what counts
    data["late"] = True
    return "sent"


@on_event("test:returns-unstorable")
def returns_unstorable(event):
    return {"text": "lone \ud800 surrogate"}


@on_event("test:cancels-a-neighbour")
def cancels_a_neighbour(event):
    """Asks to cancel a run claimed in the same batch, and returns once this worker's lease
    keeper has seen the request."""
    from runtime import cancel_run
    from runtime.lease import lease_keeper

    neighbour = Run.objects.get(event_type="test:batch", input__n=event.data["n"])
    cancel_run(neighbour.id)
    deadline = time.monotonic() + 20
    while not lease_keeper._active[neighbour.id][0].is_cancel_requested:
        if time.monotonic() > deadline:
            raise Boom("the lease keeper never saw the cancel request")
        time.sleep(0.01)
    return "asked"


@on_event("test:async-sends-from-a-thread")
async def async_sends_from_a_thread(event):
    """Sends from a worker thread of its own (asyncio.to_thread or asgiref's sync_to_async),
    then fails if asked to."""
    from asgiref.sync import sync_to_async

    data = {"via": event.data["via"]}
    if event.data["via"] == "to_thread":
        await asyncio.to_thread(send, "test:downstream", data)
    else:
        await sync_to_async(send)("test:downstream", data)
    if event.data.get("fail"):
        raise Boom("fails after sending from a thread")
    return "sent"


@on_event("test:keyed-side-effect", retry=Retry(1, delay=0.01))
def keyed_side_effect(event):
    """Shows its idempotency key: in the error of its first attempt, in the result of the next."""
    key = current_run().idempotency_key
    if current_run().attempt == 1:
        raise Boom(key)
    return key


@on_event("test:sends-later")
def sends_later(event):
    """Sends test:downstream after event.data["delay"] seconds, with its success."""
    send("test:downstream", {"from": "later"}, delay=event.data["delay"])


@on_event("test:short-lived", retention_days=1)
def short_lived(event):
    return event.data


@on_event("test:kept-forever", retention_days=0)
def kept_forever(event):
    return event.data
