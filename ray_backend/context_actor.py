"""The context actor: where each run's state lives outside the driver while steps run.

One actor serves every run of a driver process (``RunsHost``, started by ``runs_actor``):
a new actor per run would be a new Python process per run, ~0.3–0.9 s of CPU that a
short run pays on a small machine. Each run's state is a ``RunState`` under its run key;
a run reaches only its own through its ``RunChannel``. A ``RunState`` holds, for one run:
- the *base* context: the snapshot the driver committed after the last finished step
  (versioned, so a late commit never overwrites a newer one);
- the *live* context of each running task (keyed by its token): the state its worker
  streamed while the step ran (at most ``progress_interval_s`` old, or exact after
  ``ctx.commit()``). A rollback after a crash or a stop gets this state;
- start markers (task token → node id), which tell the driver where a step runs;
- event batches workers sent and the driver has not yet replayed, in send order,
  and the latest progress per step.

Plain classes made remote by the driver (like ``ray.util.queue``), so the bookkeeping is
testable without Ray. The actor is sequential on purpose: every call is microseconds
(workers coalesce progress), so reads never wait long, even with many runs, and calls
from one worker apply in the order they were sent.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import ray

from synapse_steps.runtime import RuntimeEvent

# The RunState methods a run may call through its channel.
_CALLS = frozenset({"commit", "committed", "started", "report", "live", "journaled", "journaled_upto", "progress", "drain"})


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


class RunsHost:
    """Every open run's ``RunState``, by run key: the body of the shared context actor.

    A run's state appears with its first call (the driver's first commit, or a worker's
    report that overtook it: calls from different processes are not ordered) and goes
    with ``close``, so the actor holds nothing for runs that ended.
    """

    def __init__(self, ended_kept: int = 10_000) -> None:
        self._runs: dict[str, RunState] = {}
        # Keys of ended runs, so that a late call from a stopped task of one (seconds
        # later at most) is answered without bringing its state back; the newest ``ended_kept``.
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._ended_kept = ended_kept

    def call(self, run: str, method: str, *args: Any) -> Any:
        """``RunState.method(*args)`` on run ``run``'s state; a late call for an ended run gets an empty state's answer."""
        if method not in _CALLS:
            raise AttributeError(f"RunState has no call {method!r}")
        state = self._runs.get(run)
        if state is None:
            state = RunState()
            if run not in self._ended:
                self._runs[run] = state
        return getattr(state, method)(*args)

    def close(self, run: str) -> None:
        """Run ``run`` ended: drop its state (and the object references in its snapshots)."""
        self._runs.pop(run, None)
        self._ended[run] = None
        while len(self._ended) > self._ended_kept:
            self._ended.popitem(last=False)

    def open_runs(self) -> list[str]:
        """Keys of the runs whose state this actor holds (for checks that nothing outlives its run)."""
        return sorted(self._runs)

    def exit(self) -> None:
        """End this actor after the calls sent before this one (the driver ends it while it still starts)."""
        ray.actor.exit_actor()


@dataclass(frozen=True)
class RunChannel:
    """One run's way to its state in the shared context actor; picklable, so tasks carry it."""

    actor: ray.actor.ActorHandle
    run: str

    def send(self, method: str, *args: Any) -> ray.ObjectRef:
        """Call ``RunState.method(*args)`` on this run's state; the answer is the returned reference."""
        ref: ray.ObjectRef = self.actor.call.remote(self.run, method, *args)
        return ref
