"""Before the first step: prove the context and every step can travel to a worker."""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from typing import Any

from ray import cloudpickle

from ray_backend import stored_fields
from ray_backend.context_state import read_state
from ray_backend.runtime_shipping import ship_runtime
from synapse_steps.errors import ContextNotSerializableError
from synapse_steps.step import BaseStep


def check_serializable(context: Any, steps: Sequence[BaseStep]) -> None:
    """Raise ContextNotSerializableError naming the first field or step that cannot be pickled.

    Large array-like values are skipped: they go through the object store, and
    pickling them here would copy them for nothing. The runtime context does not
    travel with the context; a step that holds it carries a reference to the task's
    runtime instead (``runtime_shipping``).
    """
    ship_runtime(context.runtime_ctx)
    _try(type(context), f"the context class {type(context).__qualname__}")
    for name, value in read_state(context).items():
        what = f"context field '{name}' ({type(value).__name__})"
        _refuse_open_file(value, what)
        if not stored_fields.is_large(value):
            _try(value, what)
    for step in steps:
        what = f"step '{step.name}' ({type(step).__qualname__})"
        for value in getattr(step, "__dict__", {}).values():
            _refuse_open_file(value, what)
        _try(step, what)


def _refuse_open_file(value: Any, what: str) -> None:
    """cloudpickle turns a file opened for reading into a StringIO copy: reject it by name."""
    if isinstance(value, io.IOBase) and not isinstance(value, (io.BytesIO, io.StringIO)):
        raise ContextNotSerializableError(
            f"{what} is an open file, which cannot be sent to a Ray worker (it would arrive as a "
            "detached copy, if at all). Keep its path in the context and open it inside execute()."
        )


def _try(obj: Any, what: str) -> None:
    try:
        cloudpickle.dumps(obj)
    except Exception as exc:  # noqa: BLE001 - pickling raises many types
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
