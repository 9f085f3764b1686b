"""Weighted overall progress: pure arithmetic, no I/O, shared by every executor."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

from synapse_steps.errors import StepDefinitionError
from synapse_steps.step import BaseStep

ProgressCallback = Callable[[int, int], None]


def validate_weights(steps: Sequence[BaseStep[Any]]) -> list[float]:
    """Each step's weight, or StepDefinitionError naming the step whose weight is bad."""
    weights: list[float] = []
    for step in steps:
        weight = step.progress_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise StepDefinitionError(f"step '{step.name}' has progress_weight {weight!r}; it must be a number")
        if not math.isfinite(weight) or weight < 0:
            raise StepDefinitionError(
                f"step '{step.name}' has progress_weight {weight!r}; it must be finite and >= 0"
            )
        weights.append(float(weight))
    if steps and sum(weights) <= 0:
        names = ", ".join(s.name for s in steps)
        raise StepDefinitionError(f"the total progress_weight of steps ({names}) is 0; give at least one a weight > 0")
    return weights


class WeightedProgress:
    """Overall fraction = (weights done + running weight × its fraction) / total.

    Never goes backwards; exactly 1.0 once every step has finished or been skipped.
    ``on_change(percent, 100)`` fires when the whole-percent value changes, which
    keeps the seed's ``progress_callback(current, total)`` contract and at most 101
    calls per run however often steps report.
    """

    def __init__(self, weights: Sequence[float], on_change: ProgressCallback | None = None) -> None:
        self._weights = list(weights)
        self._total = sum(self._weights)
        self._done = 0.0
        self._finished = 0
        self._running: int | None = None
        self._overall = 0.0
        self._percent = 0
        self._on_change = on_change
        self._lock = threading.Lock()

    @property
    def overall(self) -> float:
        """Overall progress, 0..1, weighted by each step's ``progress_weight``."""
        return self._overall

    def begin(self, order: int) -> None:
        """Mark the step at position ``order`` as running: its own progress now moves the overall value."""
        self._running = order

    def update(self, order: int, current: float, total: float) -> None:
        """Move inside step ``order``'s band; ignored unless that step is running."""
        if order != self._running or not (math.isfinite(current) and math.isfinite(total)) or total <= 0:
            return  # not finite: ignored (RuntimeContext warns); never NaN progress
        fraction = min(max(current / total, 0.0), 1.0)
        self._advance(self._done + self._weights[order] * fraction)

    def halt(self) -> None:
        """Stop following step progress (a failed run's rollbacks must not move it)."""
        self._running = None

    def finish(self, order: int) -> None:
        """Mark a step complete (run or skipped)."""
        self._done += self._weights[order]
        self._finished += 1
        self._running = None
        self._advance(1.0 * self._total if self._finished == len(self._weights) else self._done)

    def _advance(self, weight_done: float) -> None:
        with self._lock:
            value = 1.0 if weight_done >= self._total else weight_done / self._total
            if value <= self._overall:
                return
            self._overall = value
            percent = math.floor(value * 100 + 1e-9)  # 0.2 + 0.6 * 0.75 is 0.6499999…: still 65 %
            changed = percent != self._percent
            self._percent = percent
        if changed and self._on_change is not None:
            self._on_change(percent, 100)
