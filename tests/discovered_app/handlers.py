"""Found by runtime.registry.discover_handlers() because the app is installed."""

from runtime import on_event


@on_event("discovered:ping")
def on_ping(event):
    return {"pong": event.data["n"]}
