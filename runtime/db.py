"""Database helpers shared by the executor, the sweeper and the lease keeper."""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger("hot.db")
T = TypeVar("T")


def with_db_retry(fn: Callable[[], T], what: str, attempts: int = 6) -> T:
    """Call `fn`, reconnecting and trying again while the database is unreachable.

    A restarted PostgreSQL leaves a dead connection behind; dropping it and trying again within
    a few seconds saves a finished run's outcome instead of leaving it to lease recovery.
    `fn` must be a whole transaction, safe to run again after a failure.
    """
    delay = 0.2
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except (OperationalError, InterfaceError):
            if attempt == attempts:
                raise
            logger.warning("database unavailable during %s; reconnecting (try %d)", what, attempt)
            connection.close()
            time.sleep(delay)
            delay = min(delay * 2, 3.0)
    raise AssertionError("unreachable")
