"""Driver side of the context's round trip: caller's object → snapshot → caller's object.

Keeps, per large field, the object last stored and its reference, so a value that
has not been replaced is never stored again, and the caller's context receives a
large value only when a step replaced it.
"""

from __future__ import annotations

from typing import Any

import ray

from ray_backend import stored_fields
from ray_backend.context_state import read_state, write_state
from ray_backend.stored_fields import NewLargeValue, StoredField


class ContextTransport:
    """Builds snapshots of the caller's context and applies committed state back to it."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._stored: dict[str, tuple[Any, StoredField]] = {}
        self.version = 0
        self.committed: dict[str, Any] = {}

    def snapshot(self) -> dict[str, Any]:
        """The caller's context as a snapshot; large values not seen before are stored once."""
        snapshot: dict[str, Any] = {}
        to_store: dict[str, Any] = {}
        for name, value in read_state(self._context).items():
            known = self._stored.get(name)
            if known is not None and known[0] is value:
                snapshot[name] = known[1]
            elif stored_fields.is_large(value):
                to_store[name] = value
            else:
                snapshot[name] = value
        if to_store:
            ref = ray.put(to_store)
            for name, value in to_store.items():
                snapshot[name] = self._remember(name, value, StoredField(ref, name))
        self.committed = snapshot
        return snapshot

    def apply(self, fields: dict[str, Any], changed_ref: ray.ObjectRef | None) -> None:
        """Make the caller's context hold what a step committed."""
        resolved: dict[str, Any] = {}
        fetch: dict[str, StoredField] = {}
        for name, value in fields.items():
            if isinstance(value, NewLargeValue):
                value = StoredField(changed_ref, name)
            resolved[name] = value
            if isinstance(value, StoredField):
                known = self._stored.get(name)
                if known is None or known[1] != value:
                    fetch[name] = value
        loaded = stored_fields.load(fetch)
        state: dict[str, Any] = {}
        for name, value in resolved.items():
            if isinstance(value, StoredField):
                state[name] = loaded[name] if name in loaded else self._stored[name][0]
                self._remember(name, state[name], value)
            else:
                self._stored.pop(name, None)
                state[name] = value
        write_state(self._context, state)
        self.version += 1
        self.committed = resolved

    def _remember(self, name: str, value: Any, stored: StoredField) -> StoredField:
        self._stored[name] = (value, stored)
        return stored
