"""Keeps the leases of this process's running runs alive and notices cancel requests.

One daemon thread per process renews every lease it holds in one UPDATE. If the process dies the
renewals stop, the leases lapse, and the sweeper re-queues the runs.
"""

import logging
import threading
import uuid
from datetime import timedelta

from django.db import close_old_connections
from django.utils import timezone

from hotapp.conf import hot_settings
from hotapp.models import Run, RunStatus
from runtime.context import RunContext

logger = logging.getLogger("hot.lease")


class LeaseKeeper:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[uuid.UUID, tuple[RunContext, str]] = {}  # run id -> (run, claim token)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, ctx: RunContext, token: str) -> None:
        with self._lock:
            self._active[ctx.run_id] = (ctx, token)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="hot-lease", daemon=True)
                self._thread.start()

    def untrack(self, run_id: uuid.UUID) -> None:
        with self._lock:
            self._active.pop(run_id, None)

    def interval(self) -> float:
        # Renew well before expiry; poll at least every 2 s so a cancel is noticed quickly.
        return min(hot_settings()["RUN_LEASE_SECONDS"] / 3, 2.0)

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval())
            with self._lock:
                active = dict(self._active)
            if not active:
                continue
            try:
                self.renew(active)
            except Exception:
                logger.warning("could not renew leases", exc_info=True)
            finally:
                close_old_connections()

    def renew(self, active: dict[uuid.UUID, tuple[RunContext, str]]) -> None:
        lease = timezone.now() + timedelta(seconds=hot_settings()["RUN_LEASE_SECONDS"])
        tokens = {token for _, token in active.values()}
        mine = Run.objects.filter(id__in=list(active), claimed_by__in=tokens)
        mine.filter(status=RunStatus.RUNNING).update(lease_expires_at=lease)
        for run_id in mine.filter(cancel_requested_at__isnull=False).values_list("id", flat=True):
            active[run_id][0].is_cancel_requested = True


lease_keeper = LeaseKeeper()
