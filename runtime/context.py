"""What a handler sees while it runs: its event, its run, and the events it has sent so far."""

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runtime.exceptions import Cancelled, TaskTimedOut


@dataclass(frozen=True)
class Event:
    """The event a handler is called with."""

    id: uuid.UUID | None
    type: str
    data: Any


@dataclass(frozen=True)
class Tick:
    """What a schedule handler is called with."""

    scheduled_at: datetime  #: the tick this run fires for (UTC)
    schedule: str  #: the handler's name


@dataclass(frozen=True)
class PendingEvent:
    """An event sent by a running handler, committed only if the run succeeds."""

    id: uuid.UUID
    type: str
    data: Any


@dataclass
class RunContext:
    run_id: uuid.UUID
    function: str
    attempt: int
    stream_id: uuid.UUID
    origin_run_id: uuid.UUID | None
    outbox: list[PendingEvent] = field(default_factory=list)
    # Effects committed with the run's success (tasks it started).
    on_success: list[Callable[[], None]] = field(default_factory=list)
    # Set by the lease keeper's thread when someone asks to cancel this run.
    is_cancel_requested: bool = False
    # A task's deadline (time.monotonic() seconds); past it, the next check raises TaskTimedOut.
    deadline: float | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and crash recoveries of the same run: key side effects by it."""
        return f"hot:{self.origin_run_id or self.run_id}"

    def check_cancelled(self) -> None:
        if self.is_cancel_requested:
            raise Cancelled()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TaskTimedOut()


_local = threading.local()


def current_run() -> RunContext | None:
    """The run this thread is executing, or None outside a handler."""
    return getattr(_local, "run", None)


@contextmanager
def activate(ctx: RunContext) -> Iterator[RunContext]:
    previous = current_run()
    _local.run = ctx
    try:
        yield ctx
    finally:
        _local.run = previous


def check_cancelled() -> None:
    """Raise `Cancelled` if someone asked to cancel the current run; a no-op outside a run.

    Long loops in a handler call this so a cancel takes effect before the grace period ends.
    """
    ctx = current_run()
    if ctx is not None:
        ctx.check_cancelled()
