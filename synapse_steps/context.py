"""The state shared by a run's steps; subclass it to add your own fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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

    def log(self, event: str, data: dict[str, Any], file: str | None = None, level: str = "info") -> None:
        self.runtime_ctx.log(event, data, file, level=level)

    def set_progress(
        self, current: float, total: float, category: str | None = None, *, step: str | None = None
    ) -> None:
        """Report progress within a step; the step's band of overall progress follows it."""
        self.runtime_ctx.set_progress(current, total, step or category or self.current_step)

    def log_message(self, message: str, context: str = "info", *, level: str | None = None) -> None:
        self.runtime_ctx.log_message(message, level or context)

    def set_metrics(self, value: dict[str, Any], category: str | None = None, *, step: str | None = None) -> None:
        """Record metrics for a step. Raises ValueError outside a step with no category."""
        effective = step or category or self.current_step
        if effective is None:
            raise ValueError("set_metrics needs a category when called outside a running step")
        self.runtime_ctx.set_metrics(value, effective)
