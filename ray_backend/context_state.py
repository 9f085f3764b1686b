"""A context rebuilt on a worker from its state (the state helpers live in ``synapse_steps.context_state``)."""

from __future__ import annotations

from typing import Any

from synapse_steps.context_state import RUNTIME_FIELD, read_state, write_state

__all__ = ["RUNTIME_FIELD", "build_context", "read_state", "write_state"]


def build_context(context_cls: Any, state: dict[str, Any], runtime: Any) -> Any:
    """A context instance holding ``state``, built without running ``__init__``."""
    context = context_cls.__new__(context_cls)
    write_state(context, state)
    object.__setattr__(context, RUNTIME_FIELD, runtime)
    return context
