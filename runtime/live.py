"""Telling open dashboards that runs changed.

The message is a doorbell, like the Celery one: it carries no data. Each dashboard connection
then reads what changed since its cursor (Run.updated_at) from the database. Rings are coalesced
per process to at most one message every RING_INTERVAL seconds: whatever the rate, a process
sends at most 20 channel-layer messages a second (1,000 transitions a second cost 20, not a
thousand). The first ring after a quiet spell goes out at once; the interval adds at most 50 ms
to what a dashboard waits for, and each connection then checks the database at most every
hotapp.consumers.THROTTLE seconds however many processes ring.
"""

import asyncio
import logging
import threading

from django.db import transaction

logger = logging.getLogger("hot.live")
GROUP = "hot.runs"
RING_INTERVAL = 0.05


class _Bell:
    def __init__(self) -> None:
        self._pending = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def ring(self) -> None:
        self._pending.set()
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._loop, name="hot-live", daemon=True)
                    self._thread.start()

    def _loop(self) -> None:
        from channels.layers import get_channel_layer

        # One event loop for the thread's life: the Redis channel layer keeps its connection
        # per loop, so a fresh loop per ring (async_to_sync) would reconnect every time.
        loop = asyncio.new_event_loop()
        while True:
            self._pending.wait()
            self._pending.clear()
            layer = get_channel_layer()
            if layer is not None:
                try:
                    loop.run_until_complete(layer.group_send(GROUP, {"type": "runs.changed"}))
                except Exception:
                    logger.warning("could not notify dashboards", exc_info=True)
            # Rings during this pause collapse into the next message.
            threading.Event().wait(RING_INTERVAL)


_bell = _Bell()


def runs_changed() -> None:
    """Ring the dashboards' doorbell once the current transaction commits (at once outside one)."""
    transaction.on_commit(_bell.ring)
