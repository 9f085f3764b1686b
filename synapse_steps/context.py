"""The state shared by a run's steps; subclass it to add your own fields."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from synapse_steps.fanout import ShardOptions
from synapse_steps.result import StepResult
from synapse_steps.runtime import RuntimeContext


@dataclass
class BaseStepContext:
    """Base for a run's shared state.

    The orchestrator sets ``current_step`` and ``current_step_order`` before each
    step, so ``set_progress`` and ``set_metrics`` default to the running step. On Ray
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

    def _set_current_step(self, step_name: str | None, order: int | None = None) -> None:
        self.current_step = step_name
        self.current_step_order = order

    def commit(self) -> None:
        """Make this context's current state durable before going on.

        Call it after each unit of work whose undo matters ("file 7 uploaded"): if
        the step is then stopped or its worker crashes, its rollback sees at least
        this state. In-process the context is always current; on Ray the state is
        sent to the run's context actor synchronously (changes also reach it on
        their own, at most ``ray.progress_interval_s`` old).
        """
        commit = getattr(self.runtime_ctx, "commit_context", None)
        if callable(commit):
            commit(self)

    def log(self, event: str, data: dict[str, Any], file: str | None = None, level: str = "info") -> None:
        self.runtime_ctx.log(event, data, file, level=level)

    def set_progress(
        self, current: float, total: float, category: str | None = None, *, step: str | None = None
    ) -> None:
        """Report progress within a step; the step's band of overall progress follows it."""
        self.runtime_ctx.set_progress(current, total, step or category or self.current_step)

    def log_message(self, message: str, context: str = "info", *, level: str | None = None) -> None:
        self.runtime_ctx.log_message(message, level or context)

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        *,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        memory: int | None = None,
        resources: dict[str, float] | None = None,
        accelerator_type: str | None = None,
        max_retries: int = 0,
        max_in_flight: int | None = None,
    ) -> list[Any]:
        """``[fn(item) for item in items]``, run in parallel; results in input order.

        In-process: a thread pool. On Ray: one task per item with these resources
        (e.g. ``num_gpus=1`` per shard), at most ``max_in_flight`` at once. Each
        finished shard moves this step's progress. A failing shard cancels the rest
        and raises ``ShardFailedError``; the step's rollback then gets
        ``result.rollback_data["completed_shards"]``.

        Example:
            >>> squares = ctx.map(lambda x: x * x, range(100), num_cpus=0.5)  # doctest: +SKIP
        """
        options = ShardOptions(
            num_cpus, num_gpus, memory, dict(resources or {}), accelerator_type, max_retries, max_in_flight
        )
        return self.runtime_ctx.map(fn, items, options, step=self.current_step)

    def set_metrics(self, value: dict[str, Any], category: str | None = None, *, step: str | None = None) -> None:
        """Record metrics for a step. Raises ValueError outside a step with no category."""
        effective = step or category or self.current_step
        if effective is None:
            raise ValueError("set_metrics needs a category when called outside a running step")
        self.runtime_ctx.set_metrics(value, effective)
