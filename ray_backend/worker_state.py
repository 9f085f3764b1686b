"""A running step's context, split for shipping: what streams while it runs, what it ends with.

Small values travel inline. A large value (``stored_fields.is_large``) the step did
not replace goes back as the same ``StoredField`` reference; one it replaced is
returned with the task's result (driver-owned, so it outlives the worker) and is
*not* streamed while the step runs: a worker that crashes mid-step loses large
values it replaced since the step began, never small ones it streamed.
"""

from __future__ import annotations

from typing import Any

from ray_backend import stored_fields
from ray_backend.context_state import read_state
from ray_backend.result_chunks import LazyResults
from ray_backend.stored_fields import NEW_LARGE_VALUE, StoredField
from ray_backend.stored_results import STEP_RESULTS, LoadedResults


class WorkerState:
    """What a running task's context holds compared with its starting snapshot, pickled for shipping."""

    def __init__(self, snapshot: dict[str, Any], loaded: dict[str, Any], context: Any, results: LoadedResults) -> None:
        self._snapshot = snapshot
        self._loaded = loaded
        self._results = results
        self._context = context
        self._last_sent: bytes | None = None

    def live(self) -> dict[str, Any] | None:
        """The state to stream now, or None when unchanged since the last call (or unreadable).

        Runs on the shipping thread while the step mutates its context: a container
        changed mid-pickle raises, and this tick is skipped (the next one, or
        ``ctx.commit()`` on the step's own thread, gets it).
        """
        fields: dict[str, Any] = {}
        small: dict[str, Any] = {}
        try:
            for name, value in self._state().items():
                before = self._snapshot.get(name)
                if isinstance(before, StoredField) and value is self._loaded.get(name):
                    fields[name] = before
                elif not stored_fields.is_large(value):
                    fields[name] = small[name] = value
            blob = stored_fields.pickled_fingerprint(small)
        except Exception:  # noqa: BLE001 - torn read or an unpicklable value: skip this tick
            return None
        if blob == self._last_sent:
            return None
        self._last_sent = blob
        return fields

    def final(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(fields, changed large values): the state the task ends with."""
        fields: dict[str, Any] = {}
        changed_large: dict[str, Any] = {}
        for name, value in self._state().items():
            before = self._snapshot.get(name)
            if (
                isinstance(before, StoredField)
                and value is self._loaded.get(name)
                and stored_fields.is_immutable(value)
            ):
                fields[name] = before
            elif stored_fields.is_large(value):
                fields[name] = NEW_LARGE_VALUE
                changed_large[name] = value
            else:
                fields[name] = value
        return fields, changed_large


    def _state(self) -> dict[str, Any]:
        """The context's state; step results as they came if unchanged, else with untouched large values as references."""
        state = read_state(self._context)
        results = state.get(STEP_RESULTS)
        unchanged = results.as_sent() if isinstance(results, LazyResults) else None
        if unchanged is not None:
            state[STEP_RESULTS] = unchanged
        elif isinstance(results, list):
            state[STEP_RESULTS] = self._results.by_reference(results)
        return state
