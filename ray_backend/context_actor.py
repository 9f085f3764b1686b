"""The per-run actor: where a run's state lives outside the driver while steps run.

It holds, for one run:
- the *base* context: the snapshot the driver committed after the last finished step
  (versioned, so a late commit never overwrites a newer one);
- the *live* context of each running task (keyed by its token): the state its worker
  streamed while the step ran (at most ``progress_interval_s`` old, or exact after
  ``ctx.commit()``). A rollback after a crash or a stop gets this state;
- start markers (task token → node id), which tell the driver where a step runs;
- event batches workers sent and the driver has not yet replayed, in send order,
  and the latest progress per step.

A plain class made remote at construction (like ``ray.util.queue``), so its
bookkeeping is testable without Ray. It is sequential on purpose: every call is
microseconds (workers coalesce progress), so reads never wait long, and calls from
one worker apply in the order they were sent.
"""

from __future__ import annotations

from typing import Any

import ray

from synapse_steps.runtime import RuntimeEvent


class RunState:
    """Committed base snapshot, live task state, start markers, undelivered event batches."""

    def __init__(self) -> None:
        self._version = 0
        self._snapshot: dict[str, Any] = {}
        self._live: dict[str, dict[str, Any]] = {}
        self._started: dict[str, str] = {}
        self._batches: list[tuple[str, list[RuntimeEvent]]] = []
        self._progress: dict[str | None, tuple[float, float]] = {}
        self._journaled: dict[str, int] = {}
        self._settled: set[str] = set()  # tasks whose events the driver replayed from copies: batches dropped

    def commit(
        self, version: int, snapshot: dict[str, Any], done_token: str | None = None, replayed: bool = False
    ) -> None:
        """A new base snapshot; ``done_token``: the task whose outcome it holds (its live state goes).

        ``replayed``: the driver already replayed that task's events from the copies it
        returned (this actor was still starting), so its batches go, undelivered or still to come.
        """
        if done_token is not None:
            self._live.pop(done_token, None)
            if replayed:
                self._settled.add(done_token)
                self._batches = [(token, events) for token, events in self._batches if token != done_token]
        if version > self._version:
            self._version, self._snapshot = version, snapshot

    def committed(self) -> tuple[int, dict[str, Any]]:
        """The newest base snapshot and its version: what a replacement task or a late reader starts from."""
        return self._version, self._snapshot

    def started(self, token: str, node_id: str) -> None:
        """Record that task ``token`` began on ``node_id``, so a lost task can be told apart from one never scheduled."""
        self._started[token] = node_id

    def report(self, token: str, events: list[RuntimeEvent], state: dict[str, Any] | None = None) -> None:
        """A worker's batch: events in order, and (when it changed) the task's live context."""
        if token in self._settled:
            return
        if events:
            self._batches.append((token, events))
        for event in events:
            if event.kind == "progress":
                self._progress[event.step] = (event.data["current"], event.data["total"])
        if state is not None:
            self._live[token] = state

    def live(self, token: str) -> dict[str, Any] | None:
        """The latest context task ``token`` streamed, or None if it sent none."""
        return self._live.get(token)

    def journaled(self, token: str, number: int) -> None:
        """The driver journaled commit ``number`` of task ``token`` (its ``ctx.commit()`` may return)."""
        self._journaled[token] = max(number, self._journaled.get(token, 0))

    def journaled_upto(self, token: str) -> int:
        """The last commit of task ``token`` the driver journaled (a worker's ``ctx.commit()`` polls it)."""
        return self._journaled.get(token, 0)

    def progress(self) -> dict[str | None, tuple[float, float]]:
        """Each step's latest ``(current, total)``, for a driver that reads progress without draining events."""
        return dict(self._progress)

    def drain(self) -> tuple[dict[str, str], list[RuntimeEvent]]:
        """Start markers so far, and every undelivered event in send order."""
        batches, self._batches = self._batches, []
        return dict(self._started), [event for _, events in batches for event in events]

    def exit(self) -> None:
        """End this actor after the calls sent before this one (the driver's close, while it started)."""
        ray.actor.exit_actor()
