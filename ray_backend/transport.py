"""Driver side of the context's round trip: caller's object → snapshot → caller's object.

Keeps, per large field, the object last stored and its reference, so a value that
has not been replaced is never stored again, and the caller's context receives a
large value only when a step replaced it. Each value stored is sealed (``stored_fields.seal``)
so that it cannot change in place unseen; one that did change anyway is stored again.
Large values inside step results travel the same way (``stored_results``), and the
results themselves in stored chunks (``result_chunks``).
"""

from __future__ import annotations

from typing import Any

import ray

from ray_backend import stored_fields
from ray_backend.context_state import read_state, write_state
from ray_backend.result_chunks import ChunkedResults, ResultChunks
from ray_backend.stored_fields import NewLargeValue, StoredField
from ray_backend.stored_results import STEP_RESULTS, DriverResults


class ContextTransport:
    """Builds snapshots of the caller's context and applies committed state back to it."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._stored: dict[str, tuple[Any, StoredField, bytes | None]] = {}
        self._results = DriverResults()
        self._chunks = ResultChunks(self._results)
        self.version = 0
        self.committed: dict[str, Any] = {}

    def snapshot(self) -> dict[str, Any]:
        """The caller's context as a snapshot; large values not seen before are stored once."""
        snapshot: dict[str, Any] = {}
        to_store: dict[str, Any] = {}
        for name, value in read_state(self._context).items():
            known = self._stored.get(name)
            if known is not None and known[0] is value and stored_fields.still_same(value, known[2]):
                snapshot[name] = known[1]
            elif stored_fields.is_large(value):
                to_store[name] = value
            elif name == STEP_RESULTS and isinstance(value, list):
                snapshot[name] = self._chunks.send(value)
            else:
                snapshot[name] = value
        if to_store:
            ref = ray.put(to_store)
            for name, value in to_store.items():
                snapshot[name] = self._remember(name, value, StoredField(ref, name), stored_fields.seal(value))
        self.committed = snapshot
        return snapshot

    def result_by_reference(self, result: Any) -> Any:
        """A result on its way to its step's rollback: large values as references."""
        return self._results.by_reference([result], forget_others=False)[0]

    def receive_result(self, result: Any, changed_ref: ray.ObjectRef) -> Any:
        """A step's own result as its worker returned it, holding its large values."""
        return self._results.receive(result, changed_ref)

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
                if name in loaded:
                    state[name] = loaded[name]
                    self._remember(name, state[name], value, stored_fields.seal(state[name]))
                else:
                    state[name] = self._stored[name][0]
            elif name == STEP_RESULTS and isinstance(value, ChunkedResults):
                state[name] = self._chunks.sent  # the step left them as they were sent
            elif name == STEP_RESULTS and isinstance(value, list):
                state[name] = self._results.resolve(value)
            else:
                self._stored.pop(name, None)
                state[name] = value
        write_state(self._context, state)
        self.version += 1
        self.committed = resolved

    def _remember(self, name: str, value: Any, stored: StoredField, sealed: bytes | None) -> StoredField:
        self._stored[name] = (value, stored, sealed)
        return stored
