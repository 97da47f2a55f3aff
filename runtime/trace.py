"""What handlers call to add to their run's trace.

from runtime import trace
trace.value("total", total)   # shown on the current call's span
"""

from runtime.trace_recorder import current_tracer


def value(name: str, value: object) -> None:
    """Record a named intermediate value on the current call's span; a no-op when untraced."""
    tracer = current_tracer()
    if tracer is not None:
        tracer.add_value(name, value)
