"""The execution tracer: records every call into user code while a run's handler executes.

It uses `sys.settrace` on the worker thread only (tracing is per-thread, so a thread pool or
Daphne never mixes traces). The global trace function sees each new frame; frames outside user
code get no local tracer, so the standard library and site-packages cost one cached dict lookup
per call. User frames record arguments at `call`, and the return value or exception at `return`.

Python 3.11 reports a frame left by an exception as a `return` with None, like a plain
`return None`; the opcode at `f_lasti` tells them apart (RETURN_VALUE, YIELD_VALUE, or the
instruction that raised). A generator or coroutine keeps one span across its resumptions.
"""

import array
import collections
import dataclasses
import dis
import os
import reprlib
import site
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from django.core.signals import setting_changed
from django.db.models import Model, QuerySet

from hotapp.conf import hot_settings
from hotapp.masking import MASKED, is_masked_key
from runtime.exceptions import type_name

TRACE_FORMAT = 1
_RETURN_OPS = {dis.opmap[name] for name in ("RETURN_VALUE", "RETURN_CONST") if name in dis.opmap}
_YIELD_OP = dis.opmap["YIELD_VALUE"]
_SUSPENDABLE = 0x20 | 0x80 | 0x200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR
# Values under a masked key (HOT["MASK_KEYS"]) are replaced before the trace is stored, so a
# secret never reaches the database (hotapp/masking.py).
MASK = MASKED
_COMPREHENSIONS = frozenset({"<genexpr>", "<listcomp>", "<dictcomp>", "<setcomp>"})


def is_secret_name(name: object) -> bool:
    return is_masked_key(name)


# Types reprlib renders itself (dispatching on the type's name, which a user's class may share).
_REPRLIB_TYPES = frozenset(
    {str, int, float, bool, type(None), bytes, list, tuple, dict, set, frozenset}
    | {collections.deque, array.array}
)


class SafeRepr(reprlib.Repr):
    """A bounded repr that masks secret-looking keys and fields, never raises, and never
    runs a database query."""

    def __init__(self, max_chars: int) -> None:
        super().__init__()
        self.maxstring = max_chars
        self.maxother = max_chars
        self.maxlong = 60
        self.maxlevel = 4
        self.maxdict = self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 20
        self.maxdeque = self.maxarray = 20

    def repr1(self, x: Any, level: int) -> str:
        cls = type(x)
        if cls in _REPRLIB_TYPES:
            return super().repr1(x, level)
        # Checks on type(x), never on x: isinstance() and hasattr() on a lazy object (a
        # request's user) would evaluate it, querying the database.
        if issubclass(cls, QuerySet):
            # Its repr runs the query (LIMIT 21).
            return f"<QuerySet of {getattr(x.model, '__name__', '?')}>"
        if issubclass(cls, Model):
            # A model's repr calls its __str__, which may query the database.
            return f"<{cls.__name__}: pk={x.pk!r}>"
        if dataclasses.is_dataclass(cls):
            fields = (f.name for f in dataclasses.fields(cls) if f.repr)
            return self._fields(cls.__name__, ((name, getattr(x, name)) for name in fields), level)
        if issubclass(cls, tuple) and hasattr(cls, "_fields"):  # a namedtuple
            return self._fields(cls.__name__, zip(cls._fields, x, strict=False), level)
        if issubclass(cls, dict):
            return f"{cls.__name__}({self.repr_dict(x, level)})"
        return self.repr_instance(x, level)

    def _fields(self, name: str, pairs: Iterable[tuple[str, Any]], level: int) -> str:
        if level <= 0:
            return f"{name}(...)"
        parts = []
        for i, (field, value) in enumerate(pairs):
            if i >= self.maxdict:
                parts.append("...")
                break
            shown = MASK if is_secret_name(field) else self.repr1(value, level - 1)
            parts.append(f"{field}={shown}")
        return f"{name}({', '.join(parts)})"

    def repr_dict(self, x: dict, level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        parts = []
        for i, key in enumerate(x):
            if i >= self.maxdict:
                parts.append("...")
                break
            shown = MASK if is_secret_name(key) else self.repr1(x[key], level - 1)
            parts.append(f"{self.repr1(key, level - 1)}: {shown}")
        return "{" + ", ".join(parts) + "}"

    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:  # past sys.get_int_max_str_digits(): repr() refuses it
            return f"<int of {x.bit_length()} bits>"

    def repr_instance(self, x: object, level: int) -> str:
        try:
            text = repr(x)
        except Exception as exc:
            return f"<{type(x).__name__} object; repr raised {type(exc).__name__}>"
        if len(text) > self.maxother:
            half = (self.maxother - 3) // 2
            return text[:half] + "..." + text[len(text) - half :]
        return text


_SCALARS = (int, float, bool, type(None))
_reprs: dict[int, SafeRepr] = {}


def safe_repr(value: object, max_chars: int = 200) -> str:
    """A bounded, masked repr that never raises; scalars take a fast path (the common case)."""
    if type(value) in _SCALARS or (type(value) is str and len(value) <= max_chars):
        try:
            text = repr(value)
        except ValueError:  # an int too long for repr(): SafeRepr shows its size
            pass
        else:
            if len(text) <= max_chars:
                return text
    formatter = _reprs.get(max_chars)
    if formatter is None:
        formatter = _reprs[max_chars] = SafeRepr(max_chars)
    try:
        text = formatter.repr(value)
    except Exception as exc:  # a broken __len__, __iter__ or __eq__ inside a container
        return f"<{type(value).__name__} object; repr raised {type(exc).__name__}>"
    if len(text) > max_chars:  # a container of many long values
        return text[: max_chars - 3] + "..."
    return text


# Code objects whose decision UserCode remembers: code made at run time (exec, template
# engines) would otherwise be kept forever. Past it, the cache starts again.
MAX_CACHED_CODE = 10_000
# Directories that hold installed packages, wherever they are (another virtualenv, Debian's
# /usr/lib/python3/dist-packages, a user's ~/.local site-packages).
_PACKAGE_DIRS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


def _library_dirs() -> set[str]:
    paths = sysconfig.get_paths()
    dirs = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.update(site.getsitepackages())
    dirs.add(site.getusersitepackages())
    return {str(Path(d).resolve()) + os.sep for d in dirs}


class UserCode:
    """Decides, once per code object, whether a frame is user code."""

    def __init__(self, include: list[str], exclude: list[str]) -> None:
        self.include = tuple(include)
        self.exclude = tuple(exclude)
        runtime_dir = str(Path(__file__).resolve().parent) + os.sep
        hotapp_dir = str(Path(__file__).resolve().parent.parent / "hotapp") + os.sep
        self.library_dirs = tuple(_library_dirs() | {runtime_dir, hotapp_dir})
        self.user_dirs = (str(Path(hotapp_dir) / "demo") + os.sep,)
        # By id, not by code object: code objects compare equal (and hash alike) across
        # files and modules when their bytecode, names and lines are the same, so a library's
        # decision would be taken for the user's function. The entry holds the code object,
        # so its id cannot be reused while it is cached. (Hashing a code object is also not
        # cached, and slower than id().)
        self._cache: dict[int, tuple[CodeType, bool]] = {}

    def __call__(self, frame: FrameType) -> bool:
        code = frame.f_code
        known = self._cache.get(id(code))
        if known is not None and known[0] is code:
            return known[1]
        if len(self._cache) >= MAX_CACHED_CODE:
            self._cache.clear()
        decision = self._decide(code, frame.f_globals.get("__name__", ""))
        self._cache[id(code)] = (code, decision)
        return decision

    def _decide(self, code: CodeType, module: object) -> bool:
        if code.co_name in _COMPREHENSIONS:
            return False  # syntax, not a call the user wrote; calls inside attach to its caller
        if not isinstance(module, str):  # exec() with globals of its own
            module = ""
        if self.exclude and module.startswith(self.exclude):
            return False
        if self.include and module.startswith(self.include):
            return True
        filename = code.co_filename
        if filename.startswith("<"):  # <frozen …>, <string>
            return False
        filename = os.path.realpath(filename)
        if filename.startswith(self.user_dirs):
            return True
        if filename.startswith(self.library_dirs):
            return False
        return not any(part in filename for part in _PACKAGE_DIRS)


_user_code: UserCode | None = None


def user_code() -> UserCode:
    """What counts as user code under the settings in force (HOT_TRACE_INCLUDE/EXCLUDE)."""
    global _user_code
    if _user_code is None:
        hot = hot_settings()
        _user_code = UserCode(hot["TRACE_INCLUDE"], hot["TRACE_EXCLUDE"])
    return _user_code


def _settings_changed(setting: str, **kwargs: Any) -> None:
    global _user_code
    if setting == "HOT":  # override_settings, pytest-django's `settings` fixture
        _user_code = None


setting_changed.connect(_settings_changed)


class Tracer:
    """Records one run's calls into a flat list of spans (parents by index)."""

    def __init__(
        self,
        is_user_code: Callable[[FrameType], bool],
        max_spans: int,
        max_bytes: int,
        value_chars: int = 200,
        on_call: Callable[[], None] | None = None,
    ) -> None:
        self.is_user_code = is_user_code
        self.max_spans = max_spans
        self.max_bytes = max_bytes
        self.value_chars = value_chars
        self.on_call = on_call  # e.g. a cancellation check; may raise
        self.spans: list[dict[str, Any]] = []
        self.stack: list[dict[str, Any]] = []
        self.suspended: dict[FrameType, dict[str, Any]] = {}
        self.size = 0
        self.dropped = 0
        self.t0 = 0
        self.active = False

    # Installing

    def start(self) -> bool:
        """Trace calls on this thread from now on; False if another tracer (a debugger,
        coverage) already owns this thread, in which case Hot records nothing rather than
        break it."""
        if sys.gettrace() is not None:
            return False
        self.t0 = time.perf_counter_ns()
        sys.settrace(self._on_call)
        self.active = True
        return True

    def stop(self) -> None:
        if self.active:
            sys.settrace(None)
            self.active = False

    # Trace functions

    def _on_call(self, frame: FrameType, event: str, arg: Any):
        if event != "call" or not self.is_user_code(frame):
            return None
        if self.on_call is not None:
            self.on_call()
        span = self.suspended.pop(frame, None)
        if span is not None:  # a generator or coroutine resumed: continue its span
            self.stack.append(span)
            frame.f_trace_lines = False
            return self._on_event
        if len(self.spans) >= self.max_spans or self.size >= self.max_bytes:
            self.dropped += 1
            return None
        code = frame.f_code
        parent = self.stack[-1]["id"] if self.stack else None
        module = frame.f_globals.get("__name__", "")
        span = {
            "id": len(self.spans),
            "parent": parent,
            "name": code.co_qualname,
            "module": module if type(module) is str else "",
            "file": code.co_filename,
            "line": code.co_firstlineno,
            "start_us": (time.perf_counter_ns() - self.t0) // 1000,
            "args": self._args(frame, code),
        }
        if code.co_flags & _SUSPENDABLE:
            span["kind"] = {0x20: "generator", 0x80: "coroutine"}.get(
                code.co_flags & _SUSPENDABLE, "async_generator"
            )
            span["yields"] = []
        self.size += (
            120
            + len(span["name"])
            + len(span["file"])
            + sum(len(k) + len(v) for k, v in span["args"])
        )
        self.spans.append(span)
        self.stack.append(span)
        frame.f_trace_lines = False
        return self._on_event

    def _on_event(self, frame: FrameType, event: str, arg: Any):
        if event == "exception":
            if self.stack:
                self.stack[-1]["_exc"] = arg[1]
            return self._on_event
        if event != "return" or not self.stack:
            return self._on_event
        span = self.stack.pop()
        op = frame.f_code.co_code[frame.f_lasti] if frame.f_lasti >= 0 else -1
        if op == _YIELD_OP:
            self.suspended[frame] = span
            if len(span["yields"]) < 20:
                shown = safe_repr(arg, self.value_chars)
                span["yields"].append(shown)
                self.size += len(shown)
            span.pop("_exc", None)
            return self._on_event
        span["duration_us"] = (time.perf_counter_ns() - self.t0) // 1000 - span["start_us"]
        exc = span.pop("_exc", None)
        if op in _RETURN_OPS or exc is None:
            shown = safe_repr(arg, self.value_chars)
            span["result"] = shown
        else:
            shown = safe_repr(exc, self.value_chars)
            span["error"] = {"type": type_name(exc), "message": shown}
        self.size += len(shown)
        return self._on_event

    def _args(self, frame: FrameType, code: CodeType) -> list[list[str]]:
        """[[name, value], ...] in signature order (a JSON object in jsonb would lose the order)."""
        count = code.co_argcount + code.co_kwonlyargcount
        count += bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)  # *args, **kwargs
        local_vars = frame.f_locals
        args = []
        for name in code.co_varnames[:count]:
            if name in local_vars:
                value = local_vars[name]
                shown = MASK if is_secret_name(name) else safe_repr(value, self.value_chars)
                args.append([name, shown])
        return args

    # Named values (runtime.trace.value)

    def add_value(self, name: str, value: object) -> None:
        if not self.stack:
            return
        if type(name) is not str or not name.isprintable():  # JSON, and PostgreSQL, must hold it
            name = safe_repr(name, 100)
        shown = MASK if is_secret_name(name) else safe_repr(value, self.value_chars)
        values = self.stack[-1].setdefault("values", [])  # [[name, value], ...] in call order
        for pair in values:
            if pair[0] == name:
                pair[1] = shown
                return
        if len(values) < 50:
            values.append([name, shown])
            self.size += len(name) + len(shown)

    # The document

    def document(self) -> dict[str, Any]:
        """The trace as stored: spans in call order, each naming its parent's index."""
        now_us = (time.perf_counter_ns() - self.t0) // 1000
        # Offsets count from the first recorded call, not from when tracing was switched on.
        origin = self.spans[0]["start_us"] if self.spans else 0
        for span in self.spans:
            span["start_us"] -= origin
            if "duration_us" not in span:  # never returned: cancelled, or an abandoned generator
                span["duration_us"] = now_us - origin - span["start_us"]
                span["incomplete"] = True
            span.pop("_exc", None)
        return {
            "format": TRACE_FORMAT,
            "spans": self.spans,
            "span_count": len(self.spans),
            "dropped_spans": self.dropped,
            "is_truncated": self.dropped > 0,
            "limits": {"max_spans": self.max_spans, "max_bytes": self.max_bytes},
        }


_local = threading.local()


def current_tracer() -> Tracer | None:
    return getattr(_local, "tracer", None)


def set_current_tracer(tracer: Tracer | None) -> None:
    _local.tracer = tracer
