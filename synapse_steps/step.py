"""The abstract step users subclass: a name, a weight, and execute/skip/rollback."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from synapse_steps.context import BaseStepContext
from synapse_steps.resources import StepResources
from synapse_steps.result import StepResult

C = TypeVar("C", bound=BaseStepContext)


class BaseStep(ABC, Generic[C]):
    """One unit of a workflow.

    ``progress_weight`` is this step's share of overall progress (relative to the
    sum of all weights). ``resources`` is optional: the in-process executor ignores
    it; the Ray executor submits the step with it (override it per step name in the
    config without touching the code).

    Example:
        >>> class LoadStep(BaseStep[BaseStepContext]):
        ...     name = "load"
        ...     progress_weight = 0.3
        ...     def execute(self, ctx):
        ...         return StepResult(data={"count": 3})
    """

    @property
    @abstractmethod
    def name(self) -> str: ...

    @property
    @abstractmethod
    def progress_weight(self) -> float: ...

    @property
    def progress_proportion(self) -> int:
        """Share of the job's overall progress for backends that use proportions; 0 = none."""
        return 0

    @property
    def resources(self) -> StepResources:
        return StepResources()

    @abstractmethod
    def execute(self, ctx: C) -> StepResult: ...

    def can_skip(self, ctx: C) -> bool:
        return False

    def rollback(self, ctx: C, result: StepResult) -> None:
        """Undo what ``execute`` did; called with this step's own result on failure."""
        return None
