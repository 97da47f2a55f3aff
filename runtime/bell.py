"""Coalescing doorbells: many rings from one process become few messages.

Both of the runtime's doorbells work this way: the workers' (runtime.dispatch: Celery messages
saying runs are queued) and the dashboards' (runtime.live: channel-layer messages saying runs
changed). A doorbell carries no state (the database has it), so ten rings in a millisecond can be
answered by one message, sent from a thread of the bell's own instead of the thread that rang.
"""

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger("hot.bell")


class Bell:
    """Collects rings (each with optional items) from any thread and hands them in batches to
    `publish`, on a daemon thread: the first ring after a quiet spell at once, then at most one
    batch every `interval` seconds.

    A ring is always answered by a `publish` that starts after it: one that arrives while a batch
    is being published waits for the next. A failing `publish` is logged, and its items dropped:
    whoever rings must have a fallback for a lost message (the sweeper, a later ring).
    """

    def __init__(self, name: str, publish: Callable[[list[Any]], None], interval: float) -> None:
        self._name = name
        self._publish = publish
        self.interval = interval
        self._reset()
        # A forked child (a Celery prefork worker) inherits neither the thread nor, safely, the
        # locks: it starts afresh with what it rings itself.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()  # guards _items, _pending and _thread
        self._publishing = threading.Lock()  # held while a batch is handed over
        self._pending = threading.Event()
        self._items: list[Any] = []
        self._thread: threading.Thread | None = None

    def ring(self, items: Iterable[Any] = ()) -> None:
        with self._lock:
            self._items.extend(items)
            self._pending.set()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()

    def flush(self) -> None:
        """Publish what has been rung so far in the calling thread, after any batch already being
        published; returns once both are out. For a process about to exit, and for tests."""
        with self._publishing:
            with self._lock:
                if not self._pending.is_set():
                    return
                items, self._items = self._items, []
                self._pending.clear()
            try:
                self._publish(items)
            except Exception:
                logger.warning("%s: could not publish", self._name, exc_info=True)

    def _loop(self) -> None:
        while True:
            self._pending.wait()
            self.flush()
            # Rings during this pause collapse into the next batch.
            time.sleep(self.interval)
