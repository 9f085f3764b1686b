"""Before the first step: prove the context and every step can travel to a worker."""

from __future__ import annotations

import dataclasses
import io
import pickle
from collections.abc import Iterable, Sequence
from typing import Any

from ray import cloudpickle

from ray_backend import stored_fields
from ray_backend.context_state import read_state
from ray_backend.runtime_shipping import ship_runtime
from synapse_steps.errors import ContextNotSerializableError
from synapse_steps.step import BaseStep


def check_serializable(context: Any, steps: Sequence[BaseStep[Any]]) -> None:
    """Raise ContextNotSerializableError naming the first field or step that cannot be pickled.

    Large array-like values are skipped: they go through the object store, and
    pickling them here would copy them for nothing. The runtime context does not
    travel with the context; a step that holds it carries a reference to the task's
    runtime instead (``runtime_shipping``).
    """
    ship_runtime(context.runtime_ctx)
    small = {name: value for name, value in read_state(context).items() if not stored_fields.is_large(value)}
    for name, value in read_state(context).items():
        _refuse_open_file(value, f"context field '{name}'")
    for step in steps:
        for attribute, value in getattr(step, "__dict__", {}).items():
            _refuse_open_file(value, f"{_step(step)} → .{attribute}")
    try:  # one pass in the common case (a class shipped by value is pickled once, not once per step)
        stored_fields.dumps_without_refs((type(context), small, list(steps)))
        return
    except Exception:  # noqa: BLE001 - pickling raises many types; find the culprit below
        pass
    _try(type(context), f"the context class {type(context).__qualname__}")
    for name, value in small.items():
        _try(value, f"context field '{name}' ({type(value).__name__})")
    for step in steps:
        _try(step, _step(step))


def _step(step: BaseStep[Any]) -> str:
    return f"step '{step.name}' ({type(step).__qualname__})"


# How deep into nested dicts, lists, tuples, sets and dataclasses to look for open files.
_MAX_DEPTH = 16


def _refuse_open_file(value: Any, what: str) -> None:
    """cloudpickle turns a file opened for reading into a StringIO copy: reject it by name, at any depth."""
    found = _open_file_in(value, "", _MAX_DEPTH, set())
    if found is not None:
        path, handle = found
        where = f"{what} → {path}" if path else what
        raise ContextNotSerializableError(
            f"{where} ({type(handle).__name__}) is an open file, which cannot be sent to a Ray worker (it would "
            "arrive as a detached copy, if at all). Keep its path in the context and open it inside execute()."
        )


def _open_file_in(value: Any, path: str, depth: int, seen: set[int]) -> tuple[str, Any] | None:
    """(path, file) of the first open file in ``value``, walking containers once each."""
    if isinstance(value, io.IOBase):
        return None if isinstance(value, (io.BytesIO, io.StringIO)) else (path, value)
    if depth == 0 or id(value) in seen:
        return None
    children: Iterable[tuple[str, Any]]
    if isinstance(value, dict):
        children = ((f"[{key!r}]", item) for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        children = ((f"[{index}]", item) for index, item in enumerate(value))
    elif isinstance(value, (set, frozenset)):
        children = (("{…}", item) for item in value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        children = ((f".{f.name}", getattr(value, f.name, None)) for f in dataclasses.fields(value))
    else:
        return None
    seen.add(id(value))
    for step, item in children:
        found = _open_file_in(item, path + step, depth - 1, seen)
        if found is not None:
            return found
    return None


def _try(obj: Any, what: str) -> None:
    try:
        cloudpickle.dumps(obj)
    except Exception as exc:
        raise ContextNotSerializableError(
            f"{what} cannot be pickled, so it cannot be sent to a Ray worker: {type(exc).__name__}: {exc}. "
            f"{_advice(exc)}"
        ) from exc


def _advice(exc: Exception) -> str:
    """What to do, by what actually failed: an unpicklable object, or code that raised while pickled."""
    if isinstance(exc, pickle.PicklingError) or (isinstance(exc, TypeError) and "pickle" in str(exc)):
        return (
            "Keep handles such as locks, sockets and open files out of the context and steps "
            "(create them inside execute())."
        )
    return (
        f"The {type(exc).__name__} was raised while pickling it (by value, with its class), not by an "
        f"unpicklable object: {_origin(exc)}."
    )


def _origin(exc: BaseException) -> str:
    """Where the error was raised: the innermost frame's file, line and function."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "no traceback"
    code = tb.tb_frame.f_code
    return f"raised in {code.co_name}() at {code.co_filename}:{tb.tb_lineno}"
