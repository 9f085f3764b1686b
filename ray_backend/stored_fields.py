"""Large context values live in Ray's object store, referenced from the snapshot.

A snapshot is the context's attributes (minus ``runtime_ctx``) as a dict. A large
value (anything with ``nbytes`` ≥ ``LARGE_VALUE_BYTES``: numpy arrays, tensors,
bytes) is replaced by a ``StoredField`` pointing into an object that holds it, so a
step that does not touch it never copies it: the worker reads it zero-copy, and
returns it unchanged as the same reference.

A value handed to the object store must not change in place unseen (later steps
would read the stored copy): ``seal`` makes it read-only where it can (numpy
arrays: ``arr[0] = 1`` then raises "assignment destination is read-only"), and
fingerprints it where it cannot, so a changed value is stored again.
"""

from __future__ import annotations

import io
import pickle
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import ray
from ray import cloudpickle

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


@dataclass(frozen=True)
class ReturnedValue:
    """Marker in a worker's returned ``StepResult``: the value is ``changed_large[key]``."""

    key: str


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


def seal(value: Any) -> bytes | None:
    """Stop in-place change of a value just stored; returns what ``still_same`` needs.

    A numpy array (and every array it is a view of) is made read-only: None. A value
    that cannot be made read-only gets a fingerprint of its bytes (``b""``: it has
    none, so it is never trusted and is stored again each time).
    """
    if is_immutable(value):
        return None
    array = value
    while getattr(array, "flags", None) is not None and hasattr(array, "base"):
        try:
            array.flags.writeable = False
        except (ValueError, AttributeError):
            break
        array = array.base
        if array is None:
            return None
    if is_immutable(array) or _read_only_buffer(array):
        return None
    return _fingerprint(value)


def still_same(value: Any, sealed: bytes | None) -> bool:
    """True when ``value`` (the same object that was sealed) cannot have changed since."""
    if sealed is None:
        return is_immutable(value)  # read-only, unless someone made it writeable again
    return sealed != b"" and _fingerprint(value) == sealed


def _read_only_buffer(value: Any) -> bool:
    try:
        return memoryview(value).readonly
    except TypeError:
        return False


def _fingerprint(value: Any) -> bytes:
    try:
        view = memoryview(value)
    except TypeError:
        return b""
    if not view.c_contiguous:
        return b""
    return zlib.adler32(view.cast("B")).to_bytes(4, "big") + view.nbytes.to_bytes(8, "big")


class _FastRefSkipper(pickle.Pickler):
    def persistent_id(self, obj: Any) -> str | None:
        return obj.hex() if isinstance(obj, ray.ObjectRef) else None


class _RefSkipper(cloudpickle.CloudPickler):  # type: ignore[misc]  # Ray vendors cloudpickle untyped
    def persistent_id(self, obj: Any) -> str | None:
        return obj.hex() if isinstance(obj, ray.ObjectRef) else None


def dumps_without_refs(value: Any, fast: bool = False) -> bytes:
    """Pickle ``value`` with every ``ObjectRef`` in it as its id: for checks and fingerprints only.

    Pickling an ObjectRef outside Ray's own serializer would pin its object for good.
    ``fast``: the C pickler (it fails on classes that exist only by value on a worker).
    """
    buffer = io.BytesIO()
    pickler = _FastRefSkipper if fast else _RefSkipper
    pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def pickled_fingerprint(value: Any) -> bytes:
    """Bytes that change when ``value`` changes (references as their ids).

    The C pickler (fast enough to run beside a step every interval), or cloudpickle for
    what it cannot handle (classes that exist only by value on a worker).
    """
    try:
        return dumps_without_refs(value, fast=True)
    except Exception:  # noqa: BLE001 - e.g. a class that exists only by value on this worker
        return dumps_without_refs(value)


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
