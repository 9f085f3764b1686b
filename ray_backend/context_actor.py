"""The per-run actor: holds the last committed context and what workers report.

A plain class made remote at construction (like ``ray.util.queue``), so its
bookkeeping is testable without Ray. It is sequential on purpose: every call is
microseconds (workers coalesce progress), so reads never wait long, and calls
from one worker apply in the order they were sent.
"""

from __future__ import annotations

from typing import Any

from synapse_steps.runtime import RuntimeEvent


class RunState:
    """Committed snapshot, step start markers, and undelivered event batches."""

    def __init__(self) -> None:
        self._version = 0
        self._snapshot: dict[str, Any] = {}
        self._started: dict[str, str] = {}
        self._batches: list[tuple[str, list[RuntimeEvent]]] = []
        self._progress: dict[str | None, tuple[float, float]] = {}

    def commit(self, version: int, snapshot: dict[str, Any]) -> None:
        if version > self._version:
            self._version, self._snapshot = version, snapshot

    def committed(self) -> tuple[int, dict[str, Any]]:
        return self._version, self._snapshot

    def started(self, token: str, node_id: str) -> None:
        self._started[token] = node_id

    def report(self, token: str, events: list[RuntimeEvent]) -> None:
        self._batches.append((token, events))
        for event in events:
            if event.kind == "progress":
                self._progress[event.step] = (event.data["current"], event.data["total"])

    def progress(self) -> dict[str | None, tuple[float, float]]:
        return dict(self._progress)

    def drain(self) -> tuple[dict[str, str], list[RuntimeEvent]]:
        """Start markers so far, and every undelivered event in send order."""
        batches, self._batches = self._batches, []
        return dict(self._started), [event for _, events in batches for event in events]
