"""The scheduler loop (`hot scheduler`; a thread in `hot dev`): every second it fires schedule
ticks, releases the held runs that are due (delayed events, durable sleeps) and the tasks whose
awaited event came; every HOT_SWEEP_INTERVAL_SECONDS it sweeps, and every
HOT_PURGE_INTERVAL_SECONDS it purges by the retention policies (a bounded pass:
runtime/retention.py). Several may run at once; the database keeps them from doing anything
twice."""

import logging
import threading
import time

from django.db import close_old_connections

from hotapp.conf import hot_settings
from runtime import holds, retention, schedules, sweeper, waits

logger = logging.getLogger("hot.scheduler")
TICK_SECONDS = 1.0


def run_forever(stop: threading.Event, sweep_interval: float | None = None) -> None:
    sweep_interval = sweep_interval or hot_settings()["SWEEP_INTERVAL_SECONDS"]
    next_sweep = next_purge = 0.0
    synced = False
    while not stop.is_set():
        try:
            if not synced:
                schedules.sync()
                synced = True
            schedules.fire_due()
            holds.release_due()
            waits.resolve_events()
            if time.monotonic() >= next_sweep:
                sweeper.sweep()
                next_sweep = time.monotonic() + sweep_interval
            if time.monotonic() >= next_purge:
                # Set first: a purge that keeps failing is tried again a pass later, not each tick.
                next_purge = time.monotonic() + hot_settings()["PURGE_INTERVAL_SECONDS"]
                retention.purge(max_batches=hot_settings()["PURGE_MAX_BATCHES"])
        except Exception:
            logger.exception("scheduler pass failed; trying again")
        finally:
            close_old_connections()
        stop.wait(TICK_SECONDS)
