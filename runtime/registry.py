"""Handlers: functions run for events (@on_event), schedule ticks (@on_schedule) or as
long-running tasks (@task), by name.

Handlers register when their module is imported: each installed app's `handlers` module is imported
at start-up (hotapp/apps.py), plus any module named in HOT_HANDLER_MODULES.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runtime.payloads import validate_event_type
from runtime.retry import Retry, as_policy


@dataclass(frozen=True)
class Handler:
    name: str  #: registered name, module.qualname unless given; stored on each run
    fn: Callable[..., Any]
    event_type: str  #: "" unless kind is "event"
    retry: Retry
    trace: bool  #: record an execution trace of each run
    kind: str = "event"  #: "event", "schedule" or "task"
    #: kind-specific settings: {"cron": Cron, "backfill": int} or {"timeout": seconds}
    options: dict[str, Any] = field(default_factory=dict, compare=False)


def handler_name(fn: Callable[..., Any], name: str | None) -> str:
    return name or f"{fn.__module__}.{fn.__qualname__}"


_lock = threading.Lock()
_by_name: dict[str, Handler] = {}
_by_event: dict[str, tuple[Handler, ...]] = {}


def on_event(
    event_type: str,
    *,
    retry: int | Retry | None = None,
    name: str | None = None,
    trace: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the decorated function for every event of `event_type`.

    The function receives one argument, the event (`event.data`, `event.type`, `event.id`).
    `retry` is a number of retries or a `Retry` policy. Several handlers may subscribe to one
    type; each gets its own run.
    """
    validate_event_type(event_type)
    policy = as_policy(retry)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        register(Handler(handler_name(fn, name), fn, event_type, policy, trace))
        return fn

    return decorate


def register(handler: Handler) -> None:
    """Add a handler, replacing one of the same name (a re-imported module)."""
    with _lock:
        _unindex(_by_name.get(handler.name))
        _by_name[handler.name] = handler
        if handler.kind == "event":
            _by_event[handler.event_type] = (*_by_event.get(handler.event_type, ()), handler)


def unregister(name: str) -> None:
    with _lock:
        _unindex(_by_name.pop(name, None))


def _unindex(old: Handler | None) -> None:
    """Drop a replaced or removed handler from the by-event index (callers hold the lock)."""
    if old is not None and old.kind == "event":
        _by_event[old.event_type] = tuple(
            h for h in _by_event.get(old.event_type, ()) if h.name != old.name
        )


def handler_named(name: str) -> Handler | None:
    return _by_name.get(name)


def handlers_for(event_type: str) -> tuple[Handler, ...]:
    return _by_event.get(event_type, ())


def all_handlers(kind: str | None = None) -> list[Handler]:
    return sorted(
        (h for h in _by_name.values() if kind is None or h.kind == kind), key=lambda h: h.name
    )


def discover_handlers() -> None:
    """Import each installed app's `handlers` module, then those in HOT_HANDLER_MODULES."""
    from importlib import import_module

    from django.conf import settings
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("handlers")
    for module in settings.HOT["HANDLER_MODULES"]:
        import_module(module)
