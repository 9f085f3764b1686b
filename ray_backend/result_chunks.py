"""``ctx.step_results`` travels in stored chunks, and only to the steps that read it.

Every step task gets the context, and the context holds every result so far: sent
inline, a run's thousandth step would pickle, send, rebuild and send back a thousand
results, and each step would cost more than the one before. Instead:

- the driver stores the results in chunks of ``CHUNK`` once each (``ResultChunks``)
  and sends their references plus the few results after the last full chunk
  (``ChunkedResults``);
- the worker's ``ctx.step_results`` is a list that fetches them the first time the
  step uses it (``LazyResults``): a step that never looks at the results never pays
  for them;
- a step that left the results as it got them (never loaded, or loaded and still the
  same) sends back the ``ChunkedResults`` it got, and the driver keeps its own list.

A chunk is stored again when the driver's list no longer holds the same result
objects there (an entry replaced or removed). A result is a record of what its step
returned: a change made in place to an earlier result's ``data`` on the driver (in a
hook) after its chunk was stored does not reach later steps; replace the entry
instead (``ctx.step_results[i] = dataclasses.replace(...)``). Large values in results
keep their own rule (``stored_results``): sealed, and stored again if changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from ray_backend import stored_fields
from ray_backend.stored_results import DriverResults, LoadedResults

CHUNK = 64  # results per stored chunk: a 1,000-step run sends 15 references and ≤ 63 results inline


@dataclass(frozen=True)
class ChunkedResults:
    """``ctx.step_results`` on its way to a worker: full chunks by reference, the rest inline."""

    chunks: tuple[ray.ObjectRef, ...]
    tail: list[Any]  # the results after the last full chunk, large values as references


class ResultChunks:
    """Driver: the chunks stored so far, and the list they were taken from."""

    def __init__(self, results: DriverResults) -> None:
        self._results = results
        # Per stored chunk: its results (held, so their ids stay theirs), the reference,
        # and the large values in it that a fingerprint guards (not read-only).
        self._stored: list[tuple[list[Any], ray.ObjectRef, list[Any]]] = []
        self.sent: list[Any] = []

    def send(self, results: list[Any]) -> ChunkedResults:
        """``results`` for a snapshot: chunks not stored yet are stored once."""
        full = len(results) // CHUNK
        kept = 0
        for part, _, guarded in self._stored[:full]:
            start = kept * CHUNK
            if not _same_objects(part, results[start : start + CHUNK]) or not all(
                self._results.unchanged(value) for value in guarded
            ):
                break
            kept += 1
        if kept < len(self._stored):
            del self._stored[kept:]
            self._results.by_reference(results)  # forget large values no result holds any more
        for index in range(kept, full):
            part = results[index * CHUNK : (index + 1) * CHUNK]
            sent = self._results.by_reference(part, forget_others=False)
            self._stored.append((part, ray.put(sent), _guarded(part)))
        self.sent = results
        tail = self._results.by_reference(results[full * CHUNK :], forget_others=False)
        return ChunkedResults(tuple(ref for _, ref, _ in self._stored), tail)


def _same_objects(stored: list[Any], now: list[Any]) -> bool:
    return len(stored) == len(now) and all(a is b for a, b in zip(stored, now, strict=True))


def _guarded(results: list[Any]) -> list[Any]:
    """The large values in ``results`` that can change in place unseen by a flag (fingerprinted instead)."""
    found: list[Any] = []
    for result in results:
        for part in ("data", "rollback_data"):
            values = getattr(result, part, None)
            if isinstance(values, dict):
                found.extend(v for v in values.values() if stored_fields.is_large(v) and not stored_fields.is_immutable(v))
    return found


class LazyResults(list):  # type: ignore[type-arg]  # holds whatever the results are (StepResult or look-alikes)
    """A worker's ``ctx.step_results``: an ordinary list, filled from the object store on first use.

    Every list method loads it first; so do pickling and copying, which give a plain list.
    """

    __slots__ = ("_fetched", "_loading", "_resolver", "_sent")

    _sent: ChunkedResults | None
    _resolver: LoadedResults | None
    _fetched: bytes | None  # once loaded: the fingerprint of what arrived
    _loading: threading.Lock  # one load, even if the step's own threads race to it

    @classmethod
    def of(cls, sent: ChunkedResults, resolver: LoadedResults) -> LazyResults:
        """The list a step sees for ``sent``; ``resolver`` loads (and later recognizes) the large values in it."""
        lazy = cls()
        lazy._sent, lazy._resolver, lazy._loading = sent, resolver, threading.Lock()
        return lazy

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._sent = self._resolver = self._fetched = None

    @property
    def loaded(self) -> bool:
        """Whether the step used the list (so its results were fetched)."""
        return self._sent is None or self._fetched is not None

    def as_sent(self) -> ChunkedResults | None:
        """The ``ChunkedResults`` this list came as, while it holds just that; None once the step changed it.

        Safe from the shipping thread: a list still loading reads as not loaded.
        """
        if self._sent is None or self._resolver is None:
            return None
        if self._fetched is None:
            return self._sent
        now = self._resolver.by_reference(list(list.__iter__(self)))
        return self._sent if stored_fields.pickled_fingerprint(now) == self._fetched else None

    def _load(self) -> None:
        if self._fetched is not None or self._sent is None or self._resolver is None:
            return
        with self._loading:
            if self._fetched is None:  # not loaded by another thread meanwhile
                chunks = ray.get(list(self._sent.chunks)) if self._sent.chunks else []
                arrived = [result for chunk in chunks for result in chunk] + list(self._sent.tail)
                fingerprint = stored_fields.pickled_fingerprint(arrived)
                list.extend(self, self._resolver.load(arrived))
                self._fetched = fingerprint

    def __reduce_ex__(self, protocol: Any) -> Any:
        self._load()
        return list, (list(list.__iter__(self)),)


def _loads_first(name: str) -> Callable[..., Any]:
    method = getattr(list, name)

    def loads_first(self: LazyResults, *args: Any, **kwargs: Any) -> Any:
        self._load()
        return method(self, *args, **kwargs)

    loads_first.__name__ = loads_first.__qualname__ = name
    loads_first.__doc__ = method.__doc__
    return loads_first


for _name in (
    "__add__", "__contains__", "__delitem__", "__eq__", "__ge__", "__getitem__", "__gt__", "__iadd__", "__imul__",
    "__iter__", "__le__", "__len__", "__lt__", "__mul__", "__ne__", "__repr__", "__reversed__", "__rmul__",
    "__setitem__", "__sizeof__", "append", "clear", "copy", "count", "extend", "index", "insert", "pop", "remove",
    "reverse", "sort",
):
    setattr(LazyResults, _name, _loads_first(_name))
