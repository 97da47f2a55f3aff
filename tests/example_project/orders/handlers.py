"""The shop's order workflow on Hot, found by Hot because this app has a `handlers` module:
shop:order-placed → charge (its first attempt fails, the retry succeeds) → shop:order-charged →
ship → shop:order-shipped. Each step writes to the shop's own Order rows."""

from orders.models import Order
from runtime import Retry, current_run, on_event, send


class CardNetworkDown(Exception):
    pass


@on_event("shop:order-placed", retry=Retry(2, delay=0.2))
def charge(event):
    run = current_run()
    if run.attempt == 1:
        raise CardNetworkDown("the card network timed out (every first attempt, on purpose)")
    order, _ = Order.objects.update_or_create(
        number=event.data["number"],
        defaults={
            "total": event.data["total"],
            "status": Order.Status.CHARGED,
            "charge_key": run.idempotency_key,
        },
    )
    send("shop:order-charged", {"number": order.number})
    return {"charged": str(order.total)}


@on_event("shop:order-charged", retry=3)
def ship(event):
    tracking = f"TRK-{event.data['number']}"
    Order.objects.filter(number=event.data["number"]).update(
        status=Order.Status.SHIPPED, tracking=tracking
    )
    send("shop:order-shipped", {"number": event.data["number"], "tracking": tracking})
    return {"tracking": tracking}
