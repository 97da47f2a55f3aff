"""Handlers: functions run for events (@on_event), schedule ticks (@on_schedule) or as
long-running tasks (@task), by name.

Handlers register when their module is imported: each installed app's `handlers` module is imported
at start-up (hotapp/apps.py), plus any module named in HOT_HANDLER_MODULES.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runtime.exceptions import DuplicateHandler
from runtime.flow import NO_FLOW, FlowControl, flow_control
from runtime.payloads import validate_event_type
from runtime.retry_policy import Retry, as_policy


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
    #: days its finished runs are kept (runtime/retention.py); None: HOT["RETENTION_DAYS"]
    retention_days: float | None = None
    flow: FlowControl = NO_FLOW  #: concurrency, rate limit, debounce, priority (runtime.flow)


def check_retention_days(days: float | None) -> float | None:
    """A decorator's `retention_days`, checked at import: None (the global default), 0 (keep
    forever) or a number of days (fractions allowed)."""
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int | float) or not days >= 0:
        raise ValueError("retention_days must be a number of days: 0 keeps runs forever")
    return float(days)


def handler_name(fn: Callable[..., Any], name: str | None) -> str:
    return name or f"{fn.__module__}.{fn.__qualname__}"


_lock = threading.Lock()
_by_name: dict[str, Handler] = {}
# One entry per subscription: a function stacked under several @on_event has one Handler per
# event type here, all of the same name (and the first of them in _by_name).
_by_event: dict[str, tuple[Handler, ...]] = {}


def on_event(
    event_type: str,
    *,
    retry: int | Retry | None = None,
    name: str | None = None,
    trace: bool = True,
    concurrency: int | None = None,
    key: str | None = None,
    rate_limit: str | None = None,
    debounce: Any = None,
    priority: int | str = 0,
    retention_days: float | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the decorated function for every event of `event_type`.

    The function receives one argument, the event (`event.data`, `event.type`, `event.id`).
    `retry` is a number of retries or a `Retry` policy. Several handlers may subscribe to one
    type; each gets its own run. Stacked decorators subscribe one function to several types
    (one run per event; they must agree on every option).
    `retention_days` keeps its finished runs that long instead of HOT["RETENTION_DAYS"].

    Flow control, enforced in the database across every worker (runtime.flow):
    `concurrency` (most runs running at once), `rate_limit` ("10/m": most runs started in any
    such window), `debounce` ("5s": each run waits this long, and a later event for the same
    key replaces it, so the last event's run is the one that runs), all counted per value of
    `key` (a dotted path into the event, "data.customer_id") or for the whole handler; and
    `priority` (a number or a path like "data.priority"; higher runs first, default 0).
    """
    validate_event_type(event_type)
    policy = as_policy(retry)
    keep = check_retention_days(retention_days)
    flow = flow_control(
        concurrency=concurrency,
        key=key,
        rate_limit=rate_limit,
        debounce=debounce,
        priority=priority,
    )

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        register(
            Handler(
                handler_name(fn, name),
                fn,
                event_type,
                policy,
                trace,
                retention_days=keep,
                flow=flow,
            )
        )
        return fn

    return decorate


def register(handler: Handler) -> None:
    """Add a handler.

    The same function again under its name adds a subscription (stacked @on_event) or changes
    nothing; another function with the same module and qualified name replaces it (a module
    imported again). Any other function under a taken name raises DuplicateHandler: its runs
    would call whichever was registered last.
    """
    with _lock:
        old = _by_name.get(handler.name)
        if old is not None and old.fn is handler.fn:
            _subscribe_again(old, handler)
            return
        if old is not None and _qualified(old.fn) != _qualified(handler.fn):
            raise DuplicateHandler(
                f"Handler name {handler.name!r} is taken by {_qualified(old.fn)}, so "
                f"{_qualified(handler.fn)} cannot have it too: give one of them a name of its "
                "own in its decorator (name=...)"
            )
        _unindex(old)
        _by_name[handler.name] = handler
        _index(handler)


def _subscribe_again(old: Handler, new: Handler) -> None:
    """The same function registered again under its name (callers hold the lock)."""
    if old.kind != "event" or new.kind != "event":
        if new == old and new.options == old.options:
            return
        raise DuplicateHandler(
            f"{new.name} is already registered as a {old.kind} handler with other settings; "
            "give the other registration a name of its own (name=...)"
        )
    if (new.retry, new.trace, new.retention_days, new.flow) != (
        old.retry,
        old.trace,
        old.retention_days,
        old.flow,
    ):
        raise DuplicateHandler(
            f"{new.name} is subscribed to {new.event_type!r} with other retry, trace, retention "
            "or flow settings "
            f"than to {old.event_type!r}; a handler has one policy: give this subscription a "
            "name of its own (name=...)"
        )
    if all(h.name != new.name for h in _by_event.get(new.event_type, ())):
        _index(new)


def _qualified(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _index(handler: Handler) -> None:
    if handler.kind == "event":
        _by_event[handler.event_type] = (*_by_event.get(handler.event_type, ()), handler)


def unregister(name: str) -> None:
    with _lock:
        _unindex(_by_name.pop(name, None))


def _unindex(old: Handler | None) -> None:
    """Drop every subscription of a replaced or removed handler from the by-event index
    (callers hold the lock)."""
    if old is None or old.kind != "event":
        return
    for event_type, handlers in list(_by_event.items()):
        if any(h.name == old.name for h in handlers):
            _by_event[event_type] = tuple(h for h in handlers if h.name != old.name)


def handler_named(name: str) -> Handler | None:
    return _by_name.get(name)


def handlers_for(event_type: str) -> tuple[Handler, ...]:
    return _by_event.get(event_type, ())


def flow_limited() -> list[Handler]:
    """The handlers whose runs carry a flow_key (claimed by runtime.flow_claim), by name."""
    return [h for h in all_handlers("event") if h.flow.is_limited]


def subscribed_event_types() -> list[str]:
    """Every event type some handler is subscribed to (a stacked handler has several)."""
    return sorted(event_type for event_type, handlers in _by_event.items() if handlers)


def all_handlers(kind: str | None = None) -> list[Handler]:
    return sorted(
        (h for h in _by_name.values() if kind is None or h.kind == kind), key=lambda h: h.name
    )


def discover_handlers() -> None:
    """Import each installed app's `handlers` module, then those in HOT_HANDLER_MODULES."""
    from importlib import import_module

    from django.utils.module_loading import autodiscover_modules

    from hotapp.conf import hot_settings

    autodiscover_modules("handlers")
    for module in hot_settings()["HANDLER_MODULES"]:
        import_module(module)
