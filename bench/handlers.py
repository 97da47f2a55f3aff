"""The 3-step order workflow the benchmarks drive: trivial work, everything persisted."""

from runtime import on_event, send


def validate(data: dict) -> dict:
    return {"id": data["order_id"], "total": total(data["items"])}


def total(items: list) -> float:
    return sum(item["price"] for item in items)


@on_event("bench:order:created", retry=3)
def bench_order_created(event):
    order = validate(event.data)
    send("bench:order:paid", {"order_id": order["id"], "amount": order["total"]})
    return order


@on_event("bench:order:paid", retry=3)
def bench_order_paid(event):
    tracking = f"TRK{event.data['order_id']:08d}"
    send("bench:order:shipped", {"order_id": event.data["order_id"], "tracking": tracking})
    return {"tracking": tracking}


@on_event("bench:order:shipped", retry=3)
def bench_order_shipped(event):
    return {"notified": event.data["order_id"]}


@on_event("bench:ping")
def bench_ping(event):
    return {"pong": event.data["n"]}
