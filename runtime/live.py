"""Telling open dashboards that runs, tasks or events changed.

The message is a doorbell, like the Celery one: it carries no data (its type, `runs.changed`,
predates events and tasks ringing it too). Each dashboard process then reads what changed since
its pages' cursors from the database (hotapp.consumers). Rings are coalesced
per process (runtime.bell) to at most one message every RING_INTERVAL seconds: whatever the rate,
a process sends at most 20 channel-layer messages a second (1,000 transitions a second cost 20,
not a thousand). The first ring after a quiet spell goes out at once; the interval adds at most
50 ms to what a dashboard waits for, and each dashboard process then checks the database at most
every hotapp.consumers.THROTTLE seconds per group of pages however many processes ring.
"""

import asyncio
import threading

from django.db import transaction

from runtime.bell import Bell

GROUP = "hot.runs"
RING_INTERVAL = 0.05

# One event loop per publishing thread, for the thread's life: the Redis channel layer keeps its
# connection per loop, so a fresh loop per message (async_to_sync) would reconnect every time.
_loops = threading.local()
# hot dev: the event loop serving this process's websockets. The in-memory channel layer's
# queues belong to it, and asyncio objects may not be touched from another thread's loop.
_websocket_loop: asyncio.AbstractEventLoop | None = None


def serving_websockets(loop: asyncio.AbstractEventLoop) -> None:
    """Called by the dashboard's consumer: rings go out on `loop` when the layer is in-memory."""
    global _websocket_loop
    _websocket_loop = loop


def _notify(_items: list) -> None:
    from channels.layers import InMemoryChannelLayer, get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    message = layer.group_send(GROUP, {"type": "runs.changed"})
    served_by = _websocket_loop
    if isinstance(layer, InMemoryChannelLayer) and served_by is not None:
        if served_by.is_running():
            asyncio.run_coroutine_threadsafe(message, served_by).result(timeout=5)
        else:
            message.close()  # the server stopped: nobody to tell
        return
    loop = getattr(_loops, "loop", None)
    if loop is None:
        loop = _loops.loop = asyncio.new_event_loop()
    loop.run_until_complete(message)


_bell = Bell("hot-live", _notify, RING_INTERVAL)


def runs_changed() -> None:
    """Ring the dashboards' doorbell once the current transaction commits (at once outside one)."""
    transaction.on_commit(_bell.ring)
