"""The runtime a step reaches through ``ctx.runtime_ctx``: logger, env, job id and sinks.

Every call a step makes (event, progress, message, metrics) becomes one
``RuntimeEvent`` passed to ``_emit``. On the driver ``_emit`` records it and tells
subscribers (the orchestrator's progress tracker, a CLI); a worker-side subclass in
``ray_backend`` overrides ``_emit`` to ship events to the run's context actor, which
replays them here in order.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from synapse_steps.fanout import ShardOptions, map_in_threads

from synapse_steps.errors import CallbackError

EventKind = Literal["event", "progress", "metrics", "message", "step"]
Subscriber = Callable[["RuntimeEvent"], None]


@dataclass(frozen=True)
class RuntimeEvent:
    """One thing a step reported. ``step`` is the category (usually the step name).

    Kind ``step`` is the orchestrator's own lifecycle event (``data["phase"]``:
    started, succeeded, failed, skipped, rollback_started, rollback_done,
    rollback_failed, rollback_not_needed, rollback_not_run); it goes to subscribers
    only, not into ``events``.
    """

    kind: EventKind
    step: str | None
    data: dict[str, Any]
    name: str | None = None
    level: str = "info"
    file: str | None = None
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


class RuntimeContext:
    """Logger, environment, job id, and readable sinks for what steps report.

    ``events`` keeps logged events, messages and metrics in arrival order; progress is
    kept only as the latest value per step in ``progress`` (a hot loop may report it
    100,000 times); a progress value that is not a finite number is dropped with a
    warning. ``subscribe`` lets a caller watch every event live; a subscriber that
    raises fails the run (``callback_error`` keeps the first such error).

    Example:
        >>> rt = RuntimeContext(job_id="job-1")
        >>> rt.set_progress(3, 10, "load")
        >>> rt.progress["load"]
        (3, 10)
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        env: dict[str, Any] | None = None,
        job_id: str | None = None,
        client: Any = None,
    ) -> None:
        self.logger = logger if logger is not None else logging.getLogger("synapse_steps")
        self.env: dict[str, Any] = dict(env) if env is not None else {}
        self.job_id = job_id if job_id is not None else uuid.uuid4().hex[:12]
        self.client = client
        self.events: list[RuntimeEvent] = []
        self.progress: dict[str | None, tuple[float, float]] = {}
        self.metrics: dict[str | None, dict[str, Any]] = {}
        self.callback_error: CallbackError | None = None
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every future event; returns an unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def log(self, event: str, data: dict[str, Any], file: str | None = None, level: str = "info") -> None:
        self._emit(RuntimeEvent("event", None, dict(data), name=event, level=level, file=file))

    def set_progress(
        self, current: float, total: float, category: str | None = None, *, step: str | None = None
    ) -> None:
        self._emit(RuntimeEvent("progress", step or category, {"current": current, "total": total}))

    def set_metrics(self, value: dict[str, Any], category: str | None = None, *, step: str | None = None) -> None:
        self._emit(RuntimeEvent("metrics", step or category, dict(value)))

    def log_message(self, message: str, context: str = "info", *, level: str | None = None) -> None:
        """A user-facing message; ``context`` is the seed's name for the level."""
        self._emit(RuntimeEvent("message", None, {"message": str(message)}, level=level or context))

    def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], options: ShardOptions, step: str | None = None
    ) -> list[Any]:
        """Apply ``fn`` to every item in parallel, in this process (threads); see ``fanout``."""
        return map_in_threads(fn, items, options, lambda done, total: self.set_progress(done, total, step))

    def commit_context(self, context: Any) -> None:
        """Make ``context``'s current state durable now (``ctx.commit()``).

        In-process the context object is the state, so there is nothing to send; a
        worker's runtime on Ray overrides this to commit to the run's context actor.
        """

    def _emit(self, event: RuntimeEvent) -> None:
        self.record(event)

    def record(self, event: RuntimeEvent) -> None:
        """Store an event and notify subscribers; also the entry point for replayed events.

        Raises ``CallbackError`` when a subscriber raised (after notifying the others).
        """
        if event.kind == "progress":
            current, total = event.data["current"], event.data["total"]
            if not _finite(current) or not _finite(total):
                self.logger.warning("ignored progress %r/%r for step %s: not a finite number", current, total, event.step)
                return
            self.progress[event.step] = (current, total)
        elif event.kind != "step":
            if event.kind == "metrics":
                self.metrics.setdefault(event.step, {}).update(event.data)
            self.events.append(event)
            self._log(event)
        failure: CallbackError | None = None
        for callback in list(self._subscribers):
            try:
                callback(event)
            except CallbackError as exc:
                failure = failure or exc
            except Exception as exc:  # noqa: BLE001 - named, then raised: a broken subscriber fails the run
                error = CallbackError(f"event subscriber {_name_of(callback)} raised {type(exc).__name__}: {exc}")
                error.__cause__ = exc
                failure = failure or error
        if failure is not None:
            self.callback_error = self.callback_error or failure
            raise failure

    def _log(self, event: RuntimeEvent) -> None:
        level = logging.getLevelName(event.level.upper())
        if not isinstance(level, int):
            level = logging.INFO
        label = event.name or event.kind
        self.logger.log(level, "%s [%s] %s", label, event.step or "-", event.data)


def runtime_has_listeners(runtime: Any) -> bool:
    """Whether anyone besides the running orchestrator subscribed to ``runtime`` (any other
    runtime type: assume so). Lets the orchestrator skip building lifecycle events nobody reads."""
    subscribers = getattr(runtime, "_subscribers", None)
    return subscribers is None or len(subscribers) > 1


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except TypeError:
        return False


def _name_of(callback: Any) -> str:
    return getattr(callback, "__qualname__", None) or repr(callback)
