"""The demo `hot dev` loads: the seed's 3-step order workflow, a long-running task and a schedule.

order:created → charge (fails on its first attempt, succeeds on the retry) → order:paid →
ship → order:shipped → notify.
"""

import time

from runtime import Retry, current_run, on_event, on_schedule, send, start, task


class PaymentDeclined(Exception):
    pass


def validate_order(data: dict) -> dict:
    if "order_id" not in data:
        raise ValueError("an order needs an order_id")
    items = data.get("items", [])
    return {"id": data["order_id"], "items": items, "total": sum(i["price"] for i in items)}


def charge_payment(order: dict) -> dict:
    run = current_run()
    if run is not None and run.attempt == 1:
        raise PaymentDeclined("card network timed out (the demo fails every first attempt)")
    return {"charge_id": f"ch_{order['id']}", "amount": order["total"]}


def create_shipment(order_id: int) -> dict:
    return {"tracking": f"TRK{order_id:06d}"}


def send_shipping_notification(order_id: int, tracking: str) -> str:
    return f"order {order_id} shipped, tracking {tracking}"


@on_event("order:created", retry=Retry(3, delay=1))
def on_order_created(event):
    order = validate_order(event.data)
    charge = charge_payment(order)
    send("order:paid", {"order_id": order["id"], "amount": order["total"]})
    return charge


@on_event("order:paid", retry=5)
def on_order_paid(event):
    shipment = create_shipment(event.data["order_id"])
    send("order:shipped", {"order_id": event.data["order_id"], "tracking": shipment["tracking"]})
    return shipment


@on_event("order:shipped", retry=3)
def on_order_shipped(event):
    return send_shipping_notification(event.data["order_id"], event.data["tracking"])


def start_demo_task():
    return start(import_catalog, {"pages": 20, "source": "demo-catalog.csv"})


def send_demo_orders(count: int = 3) -> list:
    return [
        send(
            "order:created",
            {
                "order_id": 1000 + n,
                "customer": {"email": f"customer{n}@example.com"},
                "items": [{"sku": "mug", "price": 12.5}, {"sku": "tee", "price": 20.0 + n}],
            },
        )
        for n in range(1, count + 1)
    ]


@task(timeout=600, retry=2)
def import_catalog(ctx):
    """A long-running task: imports items page by page, checkpointing after each page, and
    takes commands from its inbox ({"pause_ms": 500} slows it down)."""
    state = ctx.restore() or {"page": 0, "items": 0}
    delay = 0.3
    while state["page"] < ctx.input.get("pages", 20):
        message = ctx.receive(timeout=0)
        if isinstance(message, dict) and "pause_ms" in message:
            delay = message["pause_ms"] / 1000
        time.sleep(delay)
        state = {"page": state["page"] + 1, "items": state["items"] + 25}
        ctx.checkpoint(state)
        if state["page"] % 5 == 0:
            ctx.send({"progress": f"{state['page']} pages, {state['items']} items"})
    return state


@on_schedule("every 30 seconds")
def tidy_abandoned_carts(tick):
    """A schedule: runs every 30 seconds (UTC), with the tick it fires for."""
    return {"checked_at": tick.scheduled_at.isoformat(), "abandoned": 0}
