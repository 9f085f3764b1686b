"""A committed context as bytes: each field cloudpickled; values of 1 MiB or more go to the blob store.

The row stays small (a large model or array is one sha256 reference), and a value that did
not change between two commits is stored once (same content, same digest).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping

import cloudpickle  # type: ignore[import-untyped]

from synapse_steps.errors import ContextNotSerializableError
from synapse_steps.journal.blobs import BlobStore

BLOB_THRESHOLD_BYTES = 1 << 20
_INLINE, _BLOB = "inline", "blob"


def encode(fields: Mapping[str, object], store: BlobStore) -> tuple[bytes, list[str]]:
    """The snapshot bytes for ``fields`` and the digests of the blobs it refers to.

    Raises :class:`ContextNotSerializableError` naming the first field that cannot be pickled.
    """
    entries: dict[str, tuple[str, bytes | str]] = {}
    digests: list[str] = []
    for name, value in fields.items():
        data = _dumps(name, value)
        if len(data) >= BLOB_THRESHOLD_BYTES:
            digest = store.put(data)
            digests.append(digest)
            entries[name] = (_BLOB, digest)
        else:
            entries[name] = (_INLINE, data)
    return pickle.dumps(entries, protocol=pickle.HIGHEST_PROTOCOL), digests


def _dumps(name: str, value: object) -> bytes:
    """C pickle when it can stand for cloudpickle (3-10x faster); cloudpickle for the rest.

    cloudpickle differs only for what plain pickle cannot load in another process: it
    refuses lambdas and local classes (then cloudpickle runs), and it pickles ``__main__``
    classes by reference (then cloudpickle pickles them by value, as it would anyway).
    """
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        if b"__main__" not in data:
            return data
    except Exception:  # noqa: BLE001 - pickling raises many types; cloudpickle decides
        pass
    try:
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)  # type: ignore[no-any-return]
    except Exception as exc:
        raise ContextNotSerializableError(
            f"context field {name!r} cannot be journaled: {type(exc).__name__}: {exc}"
        ) from exc


def decode(snapshot: bytes, store: BlobStore) -> dict[str, object]:
    """The fields of a snapshot made by :func:`encode` (blobs are read and checked)."""
    entries: dict[str, tuple[str, bytes | str]] = pickle.loads(snapshot)
    fields: dict[str, object] = {}
    for name, (kind, payload) in entries.items():
        data = store.get(str(payload)) if kind == _BLOB else payload
        assert isinstance(data, bytes)
        fields[name] = cloudpickle.loads(data)
    return fields
