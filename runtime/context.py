"""What a handler sees while it runs: its event, its run, and the events it has sent so far."""

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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
    deliver_at: datetime | None = None  #: sent with a delay: when its runs are due


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


# A context variable, not a thread-local: it follows an async handler's work into the threads
# asyncio.to_thread and asgiref's sync_to_async run it in, so a send() from there is held for
# the run's success like any other. (Each worker thread still has a context of its own.)
_current: ContextVar[RunContext | None] = ContextVar("hot_current_run", default=None)


def current_run() -> RunContext | None:
    """The run being executed here, or None outside a handler."""
    return _current.get()


@contextmanager
def activate(ctx: RunContext) -> Iterator[RunContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def check_cancelled() -> None:
    """Raise `Cancelled` if someone asked to cancel the current run; a no-op outside a run.

    Long loops in a handler call this so a cancel takes effect before the grace period ends.
    """
    ctx = current_run()
    if ctx is not None:
        ctx.check_cancelled()
