"""Hot's exceptions: one hierarchy, each docstring its default message."""


class HotError(Exception):
    """Hot could not do what was asked."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidEventType(HotError, ValueError):
    """The event type is empty or malformed."""


class PayloadError(HotError, ValueError):
    """The payload is not JSON or is too large."""


class OutcomeNotStored(HotError):
    """The run finished, but the database refused to store its outcome; it is not retried."""


class HandlerNotFound(HotError, LookupError):
    """No handler is registered under this name in this process."""


class DuplicateHandler(HotError, ValueError):
    """Two different functions were registered under one handler name."""


class RunNotFound(HotError, LookupError):
    """No run has this id."""


class EventNotFound(HotError, LookupError):
    """No event has this id."""


class InvalidTransition(HotError):
    """The run is not in a state that allows this action."""


class TaskNotFound(HotError, LookupError):
    """No task has this id."""


class TaskFailed(HotError):
    """The task did not complete."""


class TaskTimedOut(BaseException):
    """The task ran past its timeout.

    A BaseException, like Cancelled, so that a task's broad `except Exception` does not swallow it.
    """


class Cancelled(BaseException):
    """The run was cancelled.

    A BaseException, like KeyboardInterrupt, so that a handler's broad `except Exception`
    does not swallow the cancellation.
    """


class Suspended(BaseException):
    """The task is suspended in a durable wait; it resumes from the top when the wait ends.

    A BaseException, like Cancelled: a task's broad `except Exception` must let it through.
    Raised by ctx.sleep() and ctx.wait_for_event(), caught by the executor.
    """


def type_name(exc: BaseException) -> str:
    """`ValueError` for builtins, `module.Qualified` for everything else."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"
