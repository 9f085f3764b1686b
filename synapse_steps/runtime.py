"""The runtime a step reaches through ``ctx.runtime_ctx``: logger, env, clients, job id and sinks.

Every call a step makes (event, progress, message, metrics) becomes one
``RuntimeEvent`` passed to ``_emit``. On the driver ``_emit`` records it and tells
subscribers (the orchestrator's progress tracker, a CLI); a worker-side subclass in
``ray_backend`` overrides ``_emit`` to ship events to the run's context actor, which
replays them here in order. The method names and parameters are synapse-sdk's
``RuntimeContext``'s, so SDK step code runs unchanged.
"""

from __future__ import annotations

import logging
import math
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from synapse_steps.environment import RunEnvironment
from synapse_steps.errors import CallbackError
from synapse_steps.fanout import ShardOptions, map_in_threads
from synapse_steps.messages import level_name, resolve_message
from synapse_steps.run_logger import RunLogger

EventKind = Literal["event", "progress", "metrics", "message", "step", "commit"]
Subscriber = Callable[["RuntimeEvent"], None]


@dataclass(frozen=True)
class RuntimeEvent:
    """One thing a step reported. ``step`` is the category (the running step unless the call named one).

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
    """Logger, environment, clients, job id, and readable sinks for what steps report.

    ``logger`` is synapse-sdk's logger interface (``info``/``warning``/``error``,
    ``log``, ``set_progress``, ``get_step``, …); a ``logging.Logger`` passed as
    ``logger`` is where events are mirrored for Python logging (``log_sink``).
    ``env`` is a dict with the SDK's typed getters (``env.get_str("KEY")``);
    ``client``, ``v2_client``, ``agent_client``, ``checkpoint`` and ``language`` are the
    SDK's fields. ``events`` keeps logged events, messages and metrics in arrival
    order; progress is kept only as the latest value per step in ``progress`` (a hot
    loop may report it 100,000 times); a progress value that is not a finite number is
    dropped with a warning. ``subscribe`` lets a caller watch every event live; a
    subscriber that raises fails the run (``callback_error`` keeps the first such error).

    On Ray every attribute (these and any you add) is pickled to the step's worker,
    and what steps report there comes back here in order. An attribute that cannot be
    pickled (a client holding a live connection) is named in an error before the
    first step, unless ``worker_factories[name]`` gives a function that builds it on
    the worker instead (called once per worker process and run).

    Example:
        >>> rt = RuntimeContext(job_id="job-1", env={"BATCH": "32"})
        >>> rt.set_progress(3, 10, "load")
        >>> rt.progress["load"], rt.env.get_int("BATCH")
        ((3, 10), 32)
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        env: Any = None,
        job_id: str | None = None,
        client: Any = None,
        *,
        v2_client: Any = None,
        agent_client: Any = None,
        checkpoint: dict[str, Any] | None = None,
        language: str | None = None,
    ) -> None:
        self.log_sink = logger if logger is not None else logging.getLogger("synapse_steps")
        self.logger: Any = RunLogger(self)
        self.env = RunEnvironment.of(env)
        self.job_id = job_id if job_id is not None else uuid.uuid4().hex[:12]
        self.client = client
        self.v2_client = v2_client
        self.agent_client = agent_client
        self.checkpoint = checkpoint
        self.language = language
        self.worker_factories: dict[str, Callable[[], Any]] = {}
        self.events: list[RuntimeEvent] = []
        self.progress: dict[str | None, tuple[float, float]] = {}
        self.metrics: dict[str | None, dict[str, Any]] = {}
        self.callback_error: CallbackError | None = None
        self._subscribers: list[Subscriber] = []
        self._commit_hooks: list[Callable[[Any], None]] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every future event; returns an unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    @property
    def current_step(self) -> str | None:
        """The running step, as announced to ``logger.set_step``; events default to it."""
        return self.logger.get_step() if hasattr(self.logger, "get_step") else None

    def log(
        self, event: str, data: dict[str, Any], file: str | None = None, level: Any = "info", *, step: str | None = None
    ) -> None:
        """Record a structured event; ``step`` defaults to the running step so workers and threads attribute it right."""
        where = step if step is not None else self.current_step
        self._emit(RuntimeEvent("event", where, dict(data), name=event, level=level_name(level), file=file))

    def set_progress(
        self, current: float, total: float, category: str | None = None, *, step: str | None = None
    ) -> None:
        """Progress of a step; with no step it is the job's overall progress (the ``None`` entry)."""
        self._emit(RuntimeEvent("progress", step or category, {"current": current, "total": total}))

    def set_metrics(self, value: dict[str, Any], category: str | None = None, *, step: str | None = None) -> None:
        """Replace a step's metrics; ``category`` is the seed's positional name for the step."""
        where = step or category or self.current_step
        self._emit(RuntimeEvent("metrics", where, dict(value)))

    def log_message(
        self,
        message: Any,
        level: Any = "info",
        *,
        context: Any = None,
        language: str | None = None,
        step: str | None = None,
        **kwargs: Any,
    ) -> None:
        """A user-facing message: a string (``str.format``-ed with ``kwargs``), a ``{lang: template}``
        dict, or a message code (its own text and level). ``context`` is the deprecated name of ``level``.
        """
        if context is not None:
            warnings.warn("The 'context' parameter is deprecated. Use 'level' instead.", DeprecationWarning,
                          stacklevel=2)
            level = context
        text, resolved_level, key = resolve_message(message, level, self._language(language), **kwargs)
        self.emit_message(text, resolved_level, step if step is not None else self.current_step, key)

    def emit_message(self, text: str, level: str = "info", step: str | None = None, key: str | None = None) -> None:
        """Send a user-facing message; ``key`` names a ``MessageCode`` member so consumers need not parse text."""
        data: dict[str, Any] = {"message": text}
        if key is not None:
            data["key"] = key
        self._emit(RuntimeEvent("message", step, data, level=level))

    def log_metric(self, category: str, key: str, value: float, **metrics: Any) -> None:
        """A training metric (``category``: "train", "val"…), as an event named ``metric``."""
        data = {"category": category, "key": key, "value": value, "metrics": metrics}
        self._emit(RuntimeEvent("event", self.current_step, data, name="metric"))

    def log_dev_event(self, message: str, data: dict[str, Any] | None = None) -> None:
        """A developer event (debug level), not shown to end users by default."""
        payload = {"message": message, "data": data}
        self._emit(RuntimeEvent("event", self.current_step, payload, name="dev_event", level="debug"))

    def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], options: ShardOptions, step: str | None = None
    ) -> list[Any]:
        """Apply ``fn`` to every item in parallel, in this process (threads); see ``fanout``."""
        return map_in_threads(fn, items, options, lambda done, total: self.set_progress(done, total, step))

    def commit_context(self, context: Any) -> None:
        """Make ``context``'s current state durable now (``ctx.commit()``).

        In-process the context object is the state, so there is nothing to send; a
        journaled run writes it to the run journal here (see ``on_commit``). A worker's
        runtime on Ray overrides this to commit to the run's context actor, and the
        driver then calls this method with the state the worker committed.
        """
        for hook in list(self._commit_hooks):
            hook(context)

    @property
    def commits_observed(self) -> bool:
        """Whether a ``ctx.commit()`` must reach someone (the journal) before it returns."""
        return bool(self._commit_hooks)

    def on_commit(self, hook: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``hook(context)`` on every ``ctx.commit()``; returns a function that removes it."""
        self._commit_hooks.append(hook)

        def remove() -> None:
            if hook in self._commit_hooks:
                self._commit_hooks.remove(hook)

        return remove

    def _language(self, override: str | None) -> str:
        return override or self.language or self.env.get_str("SYNAPSE_LANGUAGE", "en") or "en"

    def _emit(self, event: RuntimeEvent) -> None:
        self.record(event)

    def record(self, event: RuntimeEvent) -> None:
        """Store an event and notify subscribers; also the entry point for replayed events.

        Raises ``CallbackError`` when a subscriber raised (after notifying the others).
        """
        if event.kind == "progress":
            current, total = event.data["current"], event.data["total"]
            if not _finite(current) or not _finite(total):
                self.log_sink.warning(
                    "ignored progress %r/%r for step %s: not a finite number", current, total, event.step
                )
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
        self.log_sink.log(level, "%s [%s] %s", label, event.step or "-", event.data)


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
