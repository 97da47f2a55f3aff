"""Hot's data model: events, runs and what they carry.

The database is the source of truth. Every state change of a run is a conditional UPDATE made by
the runtime (runtime/); this package only describes the rows and the queries over them. One
module per area; everything is importable from `hotapp.models`.
"""

from hotapp.models.access import ApiToken, AuditAction, AuditEntry, Via
from hotapp.models.alerts import (
    RATE_LIMITED_KINDS,
    UNDELIVERED_STATUSES,
    AlertChannelLock,
    AlertDelivery,
    AlertKind,
    DeliveryStatus,
)
from hotapp.models.bulk import BULK_FINISHED_STATUSES, BulkKind, BulkOperation, BulkStatus
from hotapp.models.runs import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    Event,
    Run,
    RunStatus,
    RunTrace,
    Trigger,
    WaitReason,
)
from hotapp.models.schedules import Schedule
from hotapp.models.tasks import (
    TASK_TERMINAL_STATUSES,
    MessageDirection,
    Task,
    TaskCheckpoint,
    TaskMessage,
    TaskStatus,
    TaskWait,
    WaitKind,
    WaitOutcome,
)

__all__ = [
    "ACTIVE_STATUSES",
    "RATE_LIMITED_KINDS",
    "UNDELIVERED_STATUSES",
    "AlertChannelLock",
    "AlertDelivery",
    "AlertKind",
    "DeliveryStatus",
    "BULK_FINISHED_STATUSES",
    "TASK_TERMINAL_STATUSES",
    "TERMINAL_STATUSES",
    "ApiToken",
    "AuditAction",
    "AuditEntry",
    "BulkKind",
    "BulkOperation",
    "BulkStatus",
    "Event",
    "MessageDirection",
    "Run",
    "RunStatus",
    "RunTrace",
    "Schedule",
    "Task",
    "TaskCheckpoint",
    "TaskMessage",
    "TaskStatus",
    "TaskWait",
    "Trigger",
    "Via",
    "WaitKind",
    "WaitOutcome",
    "WaitReason",
]
