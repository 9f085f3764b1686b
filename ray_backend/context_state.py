"""A context's state as a plain dict, and back — for ``__dict__`` and ``__slots__`` classes alike."""

from __future__ import annotations

import dataclasses
from typing import Any

# Never travels: the driver's runtime context holds loggers, clients and subscribers;
# workers get a ``WorkerRuntime`` in its place.
RUNTIME_FIELD = "runtime_ctx"


def read_state(context: Any) -> dict[str, Any]:
    """Every attribute of the context except ``runtime_ctx``: ``__dict__`` and slots alike."""
    state = dict(getattr(context, "__dict__", {}))
    slots = [name for klass in type(context).__mro__ for name in getattr(klass, "__slots__", ())]
    fields = [f.name for f in dataclasses.fields(context)] if dataclasses.is_dataclass(context) else []
    for name in [*fields, *slots]:
        if name not in state and name not in ("__dict__", "__weakref__") and hasattr(context, name):
            state[name] = getattr(context, name)
    state.pop(RUNTIME_FIELD, None)
    return state


def write_state(context: Any, state: dict[str, Any]) -> None:
    """Set fields with ``object.__setattr__``, bypassing validation and frozen models: the values were validated where they were made."""
    for name, value in state.items():
        object.__setattr__(context, name, value)


def build_context(context_cls: Any, state: dict[str, Any], runtime: Any) -> Any:
    """A context instance holding ``state``, built without running ``__init__``."""
    context = context_cls.__new__(context_cls)
    write_state(context, state)
    object.__setattr__(context, RUNTIME_FIELD, runtime)
    return context
