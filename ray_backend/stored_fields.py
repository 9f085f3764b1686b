"""Large context values live in Ray's object store, referenced from the snapshot.

A snapshot is the context's attributes (minus ``runtime_ctx``) as a dict. A large
value (anything with ``nbytes`` ≥ ``LARGE_VALUE_BYTES``: numpy arrays, tensors,
bytes) is replaced by a ``StoredField`` pointing into an object that holds it, so a
step that does not touch it never copies it: the worker reads it zero-copy, and
returns it unchanged as the same reference.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import ray

LARGE_VALUE_BYTES = 1 << 20


@dataclass(frozen=True)
class StoredField:
    """Field ``key`` of the dict stored at ``ref``."""

    ref: ray.ObjectRef
    key: str


class NewLargeValue:
    """Marker in a worker's returned snapshot: the value is in the task's second return."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "NEW_LARGE_VALUE"


NEW_LARGE_VALUE = NewLargeValue()


def is_large(value: Any) -> bool:
    """True for values big enough to go through the object store by reference instead of inline."""
    if isinstance(value, (bytes, bytearray)):
        return len(value) >= LARGE_VALUE_BYTES
    nbytes = getattr(value, "nbytes", None)
    return isinstance(nbytes, int) and nbytes >= LARGE_VALUE_BYTES


def is_immutable(value: Any) -> bool:
    """True when in-place change is impossible, so identity proves the value unchanged."""
    if isinstance(value, (bytes, str, tuple, frozenset)):
        return True
    flags = getattr(value, "flags", None)
    return getattr(flags, "writeable", True) is False


def load(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Resolve every ``StoredField`` in one ``ray.get`` per distinct object (zero-copy)."""
    by_ref: dict[ray.ObjectRef, list[tuple[str, str]]] = defaultdict(list)
    values = dict(snapshot)
    for name, value in snapshot.items():
        if isinstance(value, StoredField):
            by_ref[value.ref].append((name, value.key))
    if by_ref:
        refs = list(by_ref)
        for ref, blob in zip(refs, ray.get(refs), strict=True):
            for name, key in by_ref[ref]:
                values[name] = blob[key]
    return values
