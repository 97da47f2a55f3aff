"""Tasks and schedules the tests start and fire (tests/test_tasks.py, tests/test_schedules.py)."""

import threading
import time
from pathlib import Path

from runtime import Retry, current_run, on_event, on_schedule, send, start, task


def process(item: int) -> int:
    return item * 2


@task(retry=0)
def count_items(ctx):
    """Processes ctx.input["total"] items, checkpointing every 5; logs each item it processes.
    With "hang_at", the first time it reaches that item it hangs (to be killed)."""
    log = Path(ctx.input["log"])
    state = ctx.restore() or {"next": 0, "sum": 0}
    for item in range(state["next"], ctx.input["total"]):
        with log.open("a") as f:
            f.write(f"{item}\n")
        hang_at = ctx.input.get("hang_at")
        marker = log.with_suffix(".hung")
        if item == hang_at and not marker.exists():
            marker.write_text("once")
            time.sleep(120)
        state = {"next": item + 1, "sum": state["sum"] + process(item)}
        if state["next"] % 5 == 0:
            ctx.checkpoint(state)
    return state


@task(retry=Retry(1, delay=0.01))
def fails_once_midway(ctx):
    """Does items 0-9, logging each and checkpointing after every 5; attempt 1 fails at 7."""
    log = Path(ctx.input["log"])
    state = ctx.restore() or {"done": []}
    for item in range(len(state["done"]), 10):
        if item == 7 and ctx.attempt == 1:
            raise RuntimeError("disk full at item 7")
        with log.open("a") as f:
            f.write(f"{item}\n")
        state["done"].append(item)
        if len(state["done"]) % 5 == 0:
            ctx.checkpoint(state)
    return {"done": state["done"], "attempt": ctx.attempt}


@task(retry=Retry(1, delay=0.01))
def fails_after_three_messages(ctx):
    """Checkpoints after its first message; attempt 1 fails once it has taken three."""
    state = ctx.restore() or {"seen": []}
    while (message := ctx.receive(timeout=0)) is not None:
        state["seen"].append(message)
        if len(state["seen"]) == 1:
            ctx.checkpoint(state)
        if ctx.attempt == 1 and len(state["seen"]) == 3:
            raise RuntimeError("lost the connection")
    return {"seen": state["seen"], "attempt": ctx.attempt}


@task
def receives_with_a_timeout(ctx):
    return {"received": ctx.receive(timeout=0.05)}


@task(trace=False)  # no traced calls: checkpoint() is the only place a cancel can be seen
def checkpoints_until_cancelled(ctx):
    for n in range(3000):  # about 30 s, so a test that fails does not leave it running
        ctx.checkpoint({"n": n})
        time.sleep(0.01)
    return "never saw the cancel"


@task(retry=Retry(1, delay=0.01))
def always_fails(ctx):
    raise RuntimeError(f"attempt {ctx.attempt} failed")


@task
def echo(ctx):
    count = 0
    while (message := ctx.receive(timeout=20)) is not None:
        count += 1
        ctx.send({"echo": message, "n": count})
        ctx.checkpoint({"count": count})
    return {"count": count}


def tick_slowly():
    time.sleep(0.02)


@task(timeout=0.3)
def runs_too_long(ctx):
    while True:
        tick_slowly()  # a traced call: where the timeout takes effect


# Set by the test once it has seen the task timed out, so the worker thread ends with the test.
release_the_ignorer = threading.Event()


@task(timeout=0.2)
def ignores_its_timeout(ctx):
    release_the_ignorer.wait(30)  # no checkpoint, receive or traced call: it never notices


@task
def waits_for_mail(ctx):
    return ctx.receive()


@task
def restores_nothing(ctx):
    return {"restored": ctx.restore(), "input": ctx.input}


@on_schedule("every 10 seconds")
def every_ten_seconds(tick):
    return {"scheduled_at": tick.scheduled_at.isoformat(), "schedule": tick.schedule}


@on_schedule("*/5 * * * *", backfill=3)
def every_five_minutes_with_backfill(tick):
    return tick.scheduled_at.isoformat()


@on_schedule("@hourly", retry=Retry(1, delay=0.01))
def hourly_and_flaky(tick):
    if current_run().attempt == 1:
        raise RuntimeError("first try fails")
    return "ok"


@on_schedule("every minute")
def starts_a_task(tick):
    start(restores_nothing, {"from": "schedule"})
    return "started"


@task(name="tests.task_handlers.reconcile_every_ledger_entry_of_every_customer_account_nightly")
def a_task_with_a_long_name(ctx):
    return ctx.receive()


@on_schedule(
    "*/10 8-18 * * MON-FRI",
    name="tests.task_handlers.refresh_the_exchange_rates_of_every_currency_pair_we_quote",
)
def a_schedule_with_a_long_name(tick):
    return "refreshed"


# Durable waits (tests/test_waits.py).


def note(ctx, line: str) -> None:
    with Path(ctx.input["log"]).open("a") as f:
        f.write(f"{line}\n")


@task
def charges_sleeps_then_ships(ctx):
    """Charges once (guarded by a checkpoint), sleeps durably, then ships."""
    if ctx.restore() is None:
        note(ctx, "charged")
        ctx.checkpoint({"charged": True})
    ctx.sleep(ctx.input["seconds"])
    note(ctx, "shipped")
    return {"slept": ctx.input["seconds"]}


@task
def waits_for_payment(ctx):
    """Waits for test:paid about its order; returns the event's data, or None on timeout."""
    event = ctx.wait_for_event(
        "test:paid", match={"order": ctx.input["order"]}, timeout=ctx.input.get("timeout")
    )
    return None if event is None else {"data": event.data, "type": event.type}


@task
def asks_and_waits_for_the_answer(ctx):
    """Sends a question, which a handler answers with test:answer, and waits for the answer."""
    if ctx.restore() is None:
        send("test:question", {"task": str(ctx.task_id)})
        ctx.checkpoint({"asked": True})
    answer = ctx.wait_for_event("test:answer", match={"task": str(ctx.task_id)}, timeout=600)
    return answer.data if answer else None


@on_event("test:question")
def answers_questions(event):
    send("test:answer", {"task": event.data["task"], "answer": 42})


@task
def polls_three_rounds(ctx):
    """A loop that resumes at its round: its waits are named by key, not by their order."""
    state = ctx.restore() or {"round": 0}
    for n in range(state["round"], 3):
        note(ctx, f"round {n}")
        ctx.checkpoint({"round": n + 1})
        ctx.sleep(30, key=f"after round {n}")
    return "polled"


@task(timeout=60)
def sleeps_past_its_timeout(ctx):
    ctx.sleep(3600)
    return "woke"


@task
def sleeps_zero(ctx):
    ctx.sleep(0)
    return "did not stop"
