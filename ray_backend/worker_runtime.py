"""The ``runtime_ctx`` a step sees inside a Ray worker.

Calls are buffered and shipped to the run's context actor by a shipping thread every
``flush_interval_s``, so ``ctx.set_progress`` in a hot loop costs a locked dict write,
not a round trip. Each shipment carries the events reported since the last one (in
order; only the latest progress per step) and, when it changed, the step's context
state, so the actor always holds the step's latest state, at most one interval old.
``ctx.commit()`` ships at once and waits for the actor to have it — and, in a
journaled run, for the driver to have written it to the journal (the driver reads
the actor every ``progress_interval_s``, so such a commit takes about that long).
What is still buffered when the step ends is returned with the step's result; so
are copies of what it shipped while the actor was still starting (``take_unconfirmed``),
so that the driver of a short run need not wait for the actor's process to come up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import ray

from ray_backend.context_actor import RunChannel
from ray_backend.shard_map import map_on_ray
from synapse_steps.errors import StepsError
from synapse_steps.fanout import ShardOptions
from synapse_steps.runtime import RuntimeContext, RuntimeEvent

StateSource = Callable[[], "dict[str, Any] | None"]

# How long ``ctx.commit()`` waits for the context actor before it fails the step.
_COMMIT_TIMEOUT_S = 30.0


class CommitFailedError(StepsError, RuntimeError):
    """``ctx.commit()`` could not reach the run's context actor."""


# Kind of the marker event a commit ships: the driver journals the state, it is never replayed.
COMMIT_EVENT: Final = "commit"


class WorkerRuntime(RuntimeContext):
    """The runtime context inside a step's Ray task: events and context changes are batched to the context actor.

    A background thread ships batches every ``flush_interval_s`` so the driver sees progress while the step runs.
    """
    def __init__(
        self,
        env: dict[str, Any],
        job_id: str,
        channel: RunChannel,
        token: str,
        flush_interval_s: float,
        *,
        journaled: bool = False,
    ) -> None:
        super().__init__(logger=logging.getLogger("synapse_steps.worker"), env=env, job_id=job_id)
        self._channel = channel
        self._token = token
        self._interval = flush_interval_s
        self._lock = threading.Lock()  # guards the event buffer (step thread vs shipping thread)
        self._ship_lock = threading.Lock()  # one shipment at a time, in order
        self._pending: list[RuntimeEvent] = []
        # Each step's latest (current, total), written without a lock (one dict store is
        # atomic), and what the last shipment carried: a shipment sends what changed since.
        self._progress: dict[str | None, tuple[float, float]] = {}
        self._shipped_progress: dict[str | None, tuple[float, float]] = {}
        self._state: StateSource | None = None
        self._stop = threading.Event()
        self._shipper: threading.Thread | None = None
        self._journaled = journaled
        self._commits = 0
        self.batches_sent = 0
        # Copies of the events shipped before the actor was known to be up, and the last
        # shipment's reference: once one is answered, the actor is up (None: no copies kept).
        self._unconfirmed: list[RuntimeEvent] | None = []
        self._last_shipment: ray.ObjectRef | None = None

    def set_progress(
        self, current: float, total: float, category: str | None = None, *, step: str | None = None
    ) -> None:
        """The hot path: one dict store, no lock (~0.1 µs); the event is only built when shipped."""
        self._progress[step or category] = (current, total)

    def _emit(self, event: RuntimeEvent) -> None:
        with self._lock:
            self._pending.append(event)

    def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], options: ShardOptions, step: str | None = None
    ) -> list[Any]:
        """Shards as Ray tasks (see ``shard_map``); progress follows finished shards."""
        return map_on_ray(fn, items, options, lambda done, total: self.set_progress(done, total, step))

    def start_shipping(self, state: StateSource) -> None:
        """Ship events and ``state()`` (None: unchanged) every interval until ``stop_shipping``."""
        self._state = state
        self._shipper = threading.Thread(target=self._ship_loop, name="synapse-steps-shipper", daemon=True)
        self._shipper.start()

    def stop_shipping(self) -> None:
        """Stop the shipping thread (a shipment under way completes); what it did not ship, ``take_pending`` returns."""
        self._stop.set()
        if self._shipper is not None:
            self._shipper.join(timeout=self._interval + 5.0)

    def commit_context(self, context: Any) -> None:
        """``ctx.commit()``: ship events and state now; return once the actor (and the journal) hold them."""
        with self._lock:
            self._commits += 1
            number = self._commits
            self._pending.append(RuntimeEvent(COMMIT_EVENT, self.current_step, {"n": number}))
        self.ship_now(_COMMIT_TIMEOUT_S)
        if self._journaled:
            self._await_journal(number)

    def _await_journal(self, number: int) -> None:
        """Wait until the driver says it journaled commit ``number`` (it polls the actor)."""
        deadline = time.monotonic() + _COMMIT_TIMEOUT_S
        while True:
            try:
                if ray.get(self._channel.send("journaled_upto", self._token), timeout=_COMMIT_TIMEOUT_S) >= number:
                    return
            except (ray.exceptions.RayError, TimeoutError) as exc:
                raise CommitFailedError(f"ctx.commit(): the run's context actor did not answer ({exc})") from exc
            if time.monotonic() > deadline:
                raise CommitFailedError(
                    f"ctx.commit(): the driver did not journal the state within {_COMMIT_TIMEOUT_S:g}s"
                )
            time.sleep(min(self._interval, 0.05))

    def ship_now(self, timeout_s: float) -> None:
        """Ship what is buffered and the current state, and wait (bounded) for the actor to have it."""
        ref = self._ship()
        if ref is None:
            return
        try:
            ray.get(ref, timeout=timeout_s)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            raise CommitFailedError(f"ctx.commit(): the run's context actor did not take the state ({exc})") from exc
        self._unconfirmed = None  # the actor is up

    def take_unconfirmed(self) -> list[RuntimeEvent] | None:
        """The events shipped while the actor was not known to be up, in order; None once it took a shipment."""
        with self._ship_lock:
            self._confirm_if_answered()
            return self._unconfirmed if self.batches_sent else None

    def _confirm_if_answered(self) -> None:
        """Stop keeping copies once the actor answered the last shipment kept (it is up)."""
        shipped = self._last_shipment
        if self._unconfirmed is not None and shipped is not None and ray.wait([shipped], timeout=0)[0]:
            self._unconfirmed = None

    def take_pending(self) -> list[RuntimeEvent]:
        """What was not shipped, plus the final progress of every step.

        The final values go back with the result even if a batch already carried them:
        a batch can be lost with the context actor, the result cannot.
        """
        with self._lock:
            self._shipped_progress = {}
            return self._take_locked()

    def _ship_loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._ship()
            except Exception:
                logging.getLogger("synapse_steps.worker").debug("shipping to the context actor failed", exc_info=True)

    def _ship(self) -> ray.ObjectRef | None:
        with self._ship_lock:
            with self._lock:
                events = self._take_locked()
            state = self._state() if self._state is not None else None
            if not events and state is None:
                return None
            self.batches_sent += 1
            ref = self._channel.send("report", self._token, events, state)
            self._confirm_if_answered()
            if self._unconfirmed is not None:
                self._unconfirmed.extend(events)
                self._last_shipment = ref
            return ref

    def _take_locked(self) -> list[RuntimeEvent]:
        now = self._progress.copy()  # one C-level copy: the step thread's stores land before or after it
        progress = [
            RuntimeEvent("progress", step, {"current": current, "total": total})
            for step, (current, total) in now.items()
            if self._shipped_progress.get(step) != (current, total)
        ]
        events = self._pending + progress
        self._pending, self._shipped_progress = [], now
        return events
