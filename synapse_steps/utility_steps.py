"""synapse-sdk's utility steps: wrappers that log, time or validate, with the same names and output.

``LoggingStep(step)`` runs as ``logged_<name>`` and logs ``step_start`` /
``step_end`` (elapsed seconds, success, skipped) and ``step_rollback`` events;
``TimingStep(step)`` runs as ``timed_<name>`` and adds ``duration_seconds`` to the
result's data; ``ValidationStep(validator, name="validate", progress_weight=0.05)``
fails with the validator's message when ``validator(context)`` returns
``(False, message)``. The wrapped step may be any step (``StepProtocol``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic

from synapse_steps.result import StepResult
from synapse_steps.step import BaseStep, C, can_skip, rollback


class _Wrapper(BaseStep[C], Generic[C]):
    """Delegates skip and rollback to the wrapped step and keeps its weight."""

    prefix = ""

    def __init__(self, step: Any) -> None:
        self._wrapped = step

    @property
    def name(self) -> str:
        return f"{self.prefix}{self._wrapped.name}"

    @property
    def progress_weight(self) -> float:
        return self._wrapped.progress_weight  # type: ignore[no-any-return]

    def can_skip(self, context: C) -> bool:
        return can_skip(self._wrapped, context)

    def rollback(self, context: C, result: StepResult) -> None:
        rollback(self._wrapped, context, result)


class LoggingStep(_Wrapper[C]):
    """Wraps a step with ``step_start`` / ``step_end`` / ``step_rollback`` events.

    Example:
        >>> registry.register(LoggingStep(LoadStep()))   # doctest: +SKIP
    """

    prefix = "logged_"

    def execute(self, context: C) -> StepResult:
        """Run the wrapped step between ``step_start`` and ``step_end`` log events that carry its duration."""
        step_name = self._wrapped.name
        context.log("step_start", {"step": step_name})
        start = time.perf_counter()
        result = self._wrapped.execute(context)
        elapsed = time.perf_counter() - start
        context.log(
            "step_end",
            {"step": step_name, "elapsed": round(elapsed, 3), "success": result.success, "skipped": result.skipped},
        )
        return result  # type: ignore[no-any-return]

    def rollback(self, context: C, result: StepResult) -> None:
        """Log the rollback, then roll back the wrapped step."""
        context.log("step_rollback", {"step": self._wrapped.name})
        super().rollback(context, result)


class TimingStep(_Wrapper[C]):
    """Wraps a step and adds ``duration_seconds`` (rounded to µs) to its result's data."""

    prefix = "timed_"

    def execute(self, context: C) -> StepResult:
        """Run the wrapped step and add ``duration_seconds`` to its result's data."""
        start = time.perf_counter()
        result = self._wrapped.execute(context)
        result.data["duration_seconds"] = round(time.perf_counter() - start, 6)
        return result  # type: ignore[no-any-return]


class ValidationStep(BaseStep[C], Generic[C]):
    """Fails with the validator's message when ``validator(context)`` returns ``(False, message)``.

    Example:
        >>> ValidationStep(lambda ctx: (bool(ctx.data), "No data loaded"), name="validate_data")  # doctest: +SKIP
    """

    def __init__(
        self,
        validator: Callable[[C], tuple[bool, str | None]],
        name: str = "validate",
        progress_weight: float = 0.05,
    ) -> None:
        self._validator = validator
        self._name = name
        self._progress_weight = progress_weight

    @property
    def name(self) -> str:
        """The name given at construction."""
        return self._name

    @property
    def progress_weight(self) -> float:
        """The weight given at construction (0 by default: validation takes no share of progress)."""
        return self._progress_weight

    def execute(self, context: C) -> StepResult:
        """Fail the run with the validator's message when it returns ``(False, message)``."""
        is_valid, error = self._validator(context)
        return StepResult(success=True) if is_valid else StepResult(success=False, error=error)
