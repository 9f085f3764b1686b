"""The ``runtime_ctx`` a step sees inside a Ray worker.

Calls are buffered and shipped to the run's context actor as fire-and-forget
batches at most every ``flush_interval_s``, so ``ctx.set_progress`` in a hot loop
costs a dict write, not a round trip. A timer sends what is buffered when the step
goes quiet (a long epoch after a progress call), so the driver never sees a stale
value for longer than one interval. Only the latest progress per step is kept
between flushes; events, messages and metrics are all kept, in order. What is
still buffered when the step ends is returned with the step's result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import ray

from ray_backend.shard_map import map_on_ray
from synapse_steps.fanout import ShardOptions
from synapse_steps.runtime import RuntimeContext, RuntimeEvent


class WorkerRuntime(RuntimeContext):
    def __init__(
        self, env: dict[str, Any], job_id: str, actor: ray.actor.ActorHandle, token: str, flush_interval_s: float
    ) -> None:
        super().__init__(logger=logging.getLogger("synapse_steps.worker"), env=env, job_id=job_id)
        self._actor = actor
        self._token = token
        self._interval = flush_interval_s
        self._lock = threading.Lock()
        self._pending: list[RuntimeEvent] = []
        self._latest_progress: dict[str | None, tuple[float, float]] = {}
        self._last_progress: dict[str | None, tuple[float, float]] = {}
        self._last_flush = time.monotonic()
        self._timer: threading.Timer | None = None
        self.batches_sent = 0

    def set_progress(
        self, current: float, total: float, category: str | None = None, *, step: str | None = None
    ) -> None:
        """The hot path: a locked dict write; the event is only built when shipped."""
        with self._lock:
            self._latest_progress[step or category] = self._last_progress[step or category] = (current, total)
            self._schedule_flush_locked()

    def _emit(self, event: RuntimeEvent) -> None:
        with self._lock:
            self._pending.append(event)
            self._schedule_flush_locked()

    def _schedule_flush_locked(self) -> None:
        if self._timer is not None:
            return  # a flush is already due within one interval
        wait = self._interval - (time.monotonic() - self._last_flush)
        if wait <= 0:
            self._flush_locked()
        else:
            self._timer = threading.Timer(wait, self._flush_from_timer)
            self._timer.daemon = True
            self._timer.start()

    def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], options: ShardOptions, step: str | None = None
    ) -> list[Any]:
        """Shards as Ray tasks (see ``shard_map``); progress follows finished shards."""
        return map_on_ray(fn, items, options, lambda done, total: self.set_progress(done, total, step))

    def take_pending(self) -> list[RuntimeEvent]:
        """Stop the timer; return what was not sent, plus the final progress of every step.

        The final values go back with the result even if a batch already carried them:
        a batch can be lost with the context actor, the result cannot.
        """
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._latest_progress = dict(self._last_progress)
            return self._take_locked()

    def _flush_from_timer(self) -> None:
        with self._lock:
            self._timer = None
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._last_flush = time.monotonic()
        events = self._take_locked()
        if events:
            self._actor.report.remote(self._token, events)
            self.batches_sent += 1

    def _take_locked(self) -> list[RuntimeEvent]:
        progress = [
            RuntimeEvent("progress", step, {"current": current, "total": total})
            for step, (current, total) in self._latest_progress.items()
        ]
        events = self._pending + progress
        self._pending, self._latest_progress = [], {}
        return events
