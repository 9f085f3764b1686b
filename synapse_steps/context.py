"""The state shared by a run's steps; subclass it to add your own fields."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from synapse_steps.fanout import ShardOptions
from synapse_steps.messages import LogLevel, level_name
from synapse_steps.resources import StepResources, resolve
from synapse_steps.result import StepResult
from synapse_steps.runtime import RuntimeContext


@dataclass
class BaseStepContext:
    """Base for a run's shared state.

    The orchestrator sets ``current_step`` and ``current_step_order`` before each
    step, so ``log``, ``log_message``, ``set_progress`` and ``set_metrics`` default to
    the running step. ``mark_user_failure_emitted()`` sets ``user_failure_message_emitted``
    (synapse-sdk's flag against a second, generic failure message). On Ray
    the context travels to each step's worker and back, so every field must be
    picklable (checked before the first step runs).

    Example:
        >>> @dataclass
        ... class ProcessContext(BaseStepContext):
        ...     data: list = field(default_factory=list)
        >>> ctx = ProcessContext(runtime_ctx=RuntimeContext())
    """

    runtime_ctx: RuntimeContext
    step_results: list[StepResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    current_step: str | None = field(default=None, init=False)
    current_step_order: int | None = field(default=None, init=False)
    user_failure_message_emitted: bool = field(default=False, init=False)

    def mark_user_failure_emitted(self) -> None:
        """Record that a step already told the user why it failed (an action then adds no generic message)."""
        self.user_failure_message_emitted = True

    def _set_current_step(self, step_name: str | None, order: int | None = None) -> None:
        """Set by the orchestrator around each step; also tells the runtime's logger, so
        ``runtime_ctx.logger`` calls are attributed to the running step."""
        self.current_step = step_name
        self.current_step_order = order if step_name is not None else None
        set_step = getattr(getattr(self.runtime_ctx, "logger", None), "set_step", None)
        if set_step is not None:
            set_step(step_name, self.current_step_order)

    @property
    def idempotency_key(self) -> str:
        """``RUN_ID/STEP``: the same for every attempt of the running step, also after ``resume``.

        Steps are at-least-once (a resumed run runs the step that was cut off again),
        so pass this key to side effects that accept one (an upload's object name, an
        idempotency header, a unique database key) to make them exactly-once.
        Raises ``RuntimeError`` outside a step.
        """
        if self.current_step is None:
            raise RuntimeError("ctx.idempotency_key is defined only while a step runs (or rolls back)")
        return f"{getattr(self.runtime_ctx, 'job_id', None)}/{self.current_step}"

    def commit(self) -> None:
        """Make this context's current state durable before going on.

        Call it after each unit of work whose undo matters ("file 7 uploaded"): if
        the step is then stopped or its worker crashes, its rollback sees at least
        this state. In-process the context is always current; on Ray the state is
        sent to the run's context actor synchronously (changes also reach it on
        their own, at most ``ray.progress_interval_s`` old). In a journaled run it is
        also written to the run journal before this returns, so a rollback after the
        driver's death (``synapse-steps rollback RUN_ID``) sees it too.
        """
        commit = getattr(self.runtime_ctx, "commit_context", None)
        if callable(commit):
            commit(self)

    def log(self, event: str, data: dict[str, Any], file: str | None = None, level: Any = LogLevel.INFO) -> None:
        """Record a structured event for the current step (the seed's ``ctx.log``); ``level`` takes names or LogLevel."""
        self.runtime_ctx.log(event, data, file, level=LogLevel(level_name(level)))

    def set_progress(
        self, current: float, total: float, category: str | None = None, *, step: str | None = None
    ) -> None:
        """Report progress within a step; the step's band of overall progress follows it."""
        self.runtime_ctx.set_progress(current, total, step or category or self.current_step)

    def log_message(self, message: Any, level: Any = LogLevel.INFO, *, context: Any = None, **kwargs: Any) -> None:
        """A user-facing message from the running step; see ``RuntimeContext.log_message``.

        ``ctx.log_message("Uploaded {n} files", n=3)`` formats the template; a message
        code carries its own text and level. ``context`` is the deprecated name of ``level``.
        """
        if context is not None:
            warnings.warn("The 'context' parameter is deprecated. Use 'level' instead.", DeprecationWarning,
                          stacklevel=2)
            level = context
        self.runtime_ctx.log_message(message, LogLevel(level_name(level)), step=self.current_step, **kwargs)

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        *,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        memory: int | None = None,
        resources: dict[str, float] | None = None,
        accelerator_type: str | None = None,
        max_retries: int | None = None,
        max_in_flight: int | None = None,
    ) -> list[Any]:
        """``[fn(item) for item in items]``, run in parallel; results in input order.

        In-process: a thread pool. On Ray: one task per item with these resources
        (e.g. ``num_gpus=1`` per shard; unset: the built-in defaults, one CPU and no GPU,
        not the step's own), at most ``max_in_flight`` at once. Each
        finished shard moves this step's progress. A failing shard cancels the rest
        and raises ``ShardFailedError``; the step's rollback then gets
        ``result.rollback_data["completed_shards"]``.

        Example:
            >>> squares = ctx.map(lambda x: x * x, range(100), num_cpus=0.5)  # doctest: +SKIP
        """
        per_call = StepResources(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            memory=memory,
            resources=resources,
            accelerator_type=accelerator_type,
            max_retries=max_retries,
        )
        options = ShardOptions(resolve(per_call), max_in_flight)
        return self.runtime_ctx.map(fn, items, options, step=self.current_step)

    def set_metrics(self, value: dict[str, Any], category: str | None = None, *, step: str | None = None) -> None:
        """Record metrics for a step. Raises ValueError outside a step with no category."""
        effective = step or category or self.current_step
        if effective is None:
            raise ValueError("set_metrics needs a category when called outside a running step")
        self.runtime_ctx.set_metrics(value, effective)
