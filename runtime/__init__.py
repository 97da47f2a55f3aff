"""Hot's runtime: the public API.

from runtime import on_event, send, Retry

@on_event("order:created", retry=Retry(3, delay=2, backoff="exponential"))
def charge(event):
    ...
    send("order:paid", {"order_id": event.data["order_id"]})
"""

from runtime import trace
from runtime.actions import cancel_event, cancel_run, rerun, retry_run
from runtime.audit import Actor
from runtime.context import Event, Tick, check_cancelled, current_run
from runtime.events import send
from runtime.exceptions import (
    Cancelled,
    DuplicateHandler,
    EventNotFound,
    HandlerNotFound,
    HotError,
    InvalidEventType,
    InvalidTransition,
    OutcomeNotStored,
    PayloadError,
    RunNotFound,
    TaskFailed,
    TaskNotFound,
    TaskTimedOut,
)
from runtime.registry import on_event
from runtime.retry_policy import Retry
from runtime.schedules import on_schedule
from runtime.tasks import TaskContext, TaskHandle, cancel_task, start, task

__all__ = [
    "Actor",
    "TaskContext",
    "TaskFailed",
    "TaskHandle",
    "TaskNotFound",
    "TaskTimedOut",
    "Tick",
    "cancel_task",
    "on_schedule",
    "start",
    "task",
    "Cancelled",
    "DuplicateHandler",
    "Event",
    "EventNotFound",
    "HandlerNotFound",
    "HotError",
    "InvalidEventType",
    "InvalidTransition",
    "OutcomeNotStored",
    "PayloadError",
    "Retry",
    "RunNotFound",
    "cancel_event",
    "cancel_run",
    "check_cancelled",
    "current_run",
    "on_event",
    "rerun",
    "retry_run",
    "send",
    "trace",
]
