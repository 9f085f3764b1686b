"""Large values inside step results travel by reference, like large context fields.

``ctx.step_results`` goes to step tasks with the context (in stored chunks, see
``result_chunks``), and each result's ``data`` and ``rollback_data`` with it. A value
≥ 1 MiB there (``stored_fields.is_large``) is swapped for a ``StoredField`` on the way
out and back on arrival, by identity, so it crosses the object store once:

- the worker that produced it returns it beside its report (``returned``), and the
  driver keeps that reference (``DriverResults.receive``);
- every later snapshot, and the rollback of that step, carries only the reference
  (``DriverResults.by_reference``); workers read the value zero-copy
  (``LoadedResults.load``) and send back the same reference when they left it alone.

The driver sees the real values: ``ctx.step_results[i].data["x"]``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import ray

from ray_backend import stored_fields
from ray_backend.stored_fields import ReturnedValue, StoredField
from synapse_steps.result import StepResult, is_step_result

STEP_RESULTS = "step_results"  # the context field that holds the results so far
_PARTS = ("data", "rollback_data")

Swap = Callable[[str, str, Any], Any]  # (part, key, value) -> the value to put in its place


def swap(result: Any, replace: Swap) -> Any:
    """``result`` itself when ``replace`` keeps every value, else a shallow copy holding the new ones.

    Runs over every result for every step: it allocates nothing while nothing changes.
    """
    if not isinstance(result, StepResult) and not is_step_result(result):
        return result
    changed: dict[str, dict[str, Any]] = {}
    for part in _PARTS:
        values = getattr(result, part, None)
        if not isinstance(values, dict):
            continue
        new: dict[str, Any] | None = None
        for key, value in values.items():
            out = replace(part, key, value)
            if out is not value:
                if new is None:
                    new = dict(values)
                new[key] = out
        if new is not None:
            changed[part] = new
    if not changed:
        return result
    result = copy.copy(result)
    for part, values in changed.items():
        setattr(result, part, values)
    return result


def returned(result: Any, changed_large: dict[str, Any]) -> Any:
    """Worker: move the large values of the step's own result into the task's second return."""

    def move(part: str, key: str, value: Any) -> Any:
        if not stored_fields.is_large(value):
            return value
        changed_large[f"result:{part}:{key}"] = value
        return ReturnedValue(f"result:{part}:{key}")

    return swap(result, move)


class DriverResults:
    """The driver's large result values, each with the reference that holds it."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[Any, StoredField, bytes | None]] = {}
        self._values: dict[StoredField, Any] = {}

    def by_reference(self, results: list[Any], forget_others: bool = True) -> list[Any]:
        """``results`` with every large value as a reference; values not stored yet are stored once.

        ``forget_others``: ``results`` are all the run's results, so a value none of them
        holds any more is dropped (its object can then be freed).
        """
        new: dict[str, Any] = {}
        seen: set[int] = set()

        def collect(_part: str, _key: str, value: Any) -> Any:
            if stored_fields.is_large(value):
                seen.add(id(value))
                if self._reference(value) is None:
                    new[f"v{id(value)}"] = value
            return value

        for result in results:
            swap(result, collect)
        if new:
            ref = ray.put(new)
            for key, value in new.items():
                self._remember(value, StoredField(ref, key), stored_fields.seal(value))
        if forget_others:
            self._forget_all_but(seen)
        return [swap(result, self._as_reference) for result in results]

    def receive(self, result: Any, changed_ref: ray.ObjectRef) -> Any:
        """The step's own result as the worker returned it, with its large values loaded (zero-copy)."""
        fields: dict[str, StoredField] = {}

        def collect(_part: str, _key: str, value: Any) -> Any:
            if isinstance(value, ReturnedValue):
                fields[value.key] = StoredField(changed_ref, value.key)
            return value

        swap(result, collect)
        if not fields:
            return result
        loaded = stored_fields.load(dict(fields))
        for key, field in fields.items():
            self._remember(loaded[key], field, stored_fields.seal(loaded[key]))
        return swap(result, lambda _part, _key, value: loaded[value.key] if isinstance(value, ReturnedValue) else value)

    def resolve(self, results: list[Any]) -> list[Any]:
        """Results a worker sent back holding references: the same results with the values they stand for."""
        unknown: dict[str, StoredField] = {}

        def collect(_part: str, _key: str, value: Any) -> Any:
            if isinstance(value, StoredField) and value not in self._values:
                unknown[f"u{len(unknown)}"] = value
            return value

        for result in results:
            swap(result, collect)
        for key, value in stored_fields.load(dict(unknown)).items():
            self._remember(value, unknown[key], stored_fields.seal(value))
        return [swap(result, self._as_value) for result in results]

    def unchanged(self, value: Any) -> bool:
        """Whether a large value stored before is still the same (its reference still stands for it)."""
        return self._reference(value) is not None

    def _as_reference(self, _part: str, _key: str, value: Any) -> Any:
        reference = self._reference(value) if stored_fields.is_large(value) else None
        return value if reference is None else reference

    def _as_value(self, _part: str, _key: str, value: Any) -> Any:
        return self._values[value] if isinstance(value, StoredField) else value

    def _reference(self, value: Any) -> StoredField | None:
        known = self._known.get(id(value))
        if known is None or known[0] is not value or not stored_fields.still_same(value, known[2]):
            return None
        return known[1]

    def _remember(self, value: Any, field: StoredField, sealed: bytes | None) -> None:
        self._known[id(value)] = (value, field, sealed)
        self._values[field] = value

    def _forget_all_but(self, ids: set[int]) -> None:
        for gone in [key for key in self._known if key not in ids]:
            _, field, _ = self._known.pop(gone)
            self._values.pop(field, None)


class LoadedResults:
    """Worker: the results' large values loaded from the object store, and where each came from."""

    def __init__(self) -> None:
        self._origin: dict[int, tuple[Any, StoredField]] = {}

    def load(self, results: list[Any]) -> list[Any]:
        """``results`` with every reference replaced by its value (one ``ray.get`` per object)."""
        fields: dict[str, StoredField] = {}

        def collect(_part: str, _key: str, value: Any) -> Any:
            if isinstance(value, StoredField):
                fields[f"f{len(fields)}"] = value
            return value

        for result in results:
            swap(result, collect)
        if not fields:
            return results
        loaded = stored_fields.load(dict(fields))
        by_field = {field: loaded[key] for key, field in fields.items()}
        for field, value in by_field.items():
            self._origin[id(value)] = (value, field)
        return [swap(result, lambda _p, _k, v: by_field[v] if isinstance(v, StoredField) else v) for result in results]

    def by_reference(self, results: list[Any]) -> list[Any]:
        """``results`` with every value still as loaded (and unchangeable) back as its reference."""

        def back(_part: str, _key: str, value: Any) -> Any:
            origin = self._origin.get(id(value))
            if origin is not None and origin[0] is value and stored_fields.is_immutable(value):
                return origin[1]
            return value

        return [swap(result, back) for result in results]
