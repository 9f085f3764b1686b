"""What a step is: a protocol any object can meet, and the base class most steps extend.

The orchestrator and every executor talk to steps only through the protocol
(``name``, ``progress_weight``, ``execute``; optionally ``can_skip``, ``rollback``,
``progress_proportion``, ``resources``), so a step written against synapse-sdk's own
``BaseStep`` registers and runs here unchanged. The helpers below supply the
defaults for the optional members.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from synapse_steps.context import BaseStepContext
from synapse_steps.resources import StepResources
from synapse_steps.result import StepResult

C = TypeVar("C", bound=BaseStepContext)


@runtime_checkable
class StepProtocol(Protocol):
    """The required members of a step; ``can_skip``, ``rollback``, ``progress_proportion``
    and ``resources`` are optional (defaults: never skip, nothing to undo, 0, one CPU).

    ``execute`` may return this package's ``StepResult`` or any object with the same
    fields (synapse-sdk's ``StepResult``).
    """

    @property
    def name(self) -> str:
        """Unique within a registry; the key of config overrides, results and journal entries."""

    @property
    def progress_weight(self) -> float:
        """Relative share of overall progress (the weights need not sum to 1)."""

    def execute(self, context: Any) -> Any:
        """Do the step's work; return a result (``success=False`` or an exception fails the run)."""


class BaseStep(ABC, Generic[C]):
    """One unit of a workflow.

    ``progress_weight`` is this step's share of overall progress (relative to the
    sum of all weights). ``resources`` is optional: the in-process executor ignores
    it; the Ray executor submits the step with it (override it per step name in the
    config without touching the code). Parameter names are synapse-sdk's
    (``execute(self, context)``), so ``step.execute(context=ctx)`` works too.

    Example:
        >>> class LoadStep(BaseStep[BaseStepContext]):
        ...     name = "load"
        ...     progress_weight = 0.3
        ...     def execute(self, context):
        ...         return StepResult(data={"count": 3})
    """

    @property
    @abstractmethod
    def name(self) -> str:
        """Unique within a registry; the key of config overrides (``steps.NAME``), results and journal entries."""

    @property
    @abstractmethod
    def progress_weight(self) -> float:
        """Relative share of overall progress; a step's share is its weight over the registry's total."""

    @property
    def progress_proportion(self) -> int:
        """Share of the job's overall progress for backends that use proportions; 0 = none."""
        return 0

    @property
    def resources(self) -> StepResources:
        """What this step declares it needs; nothing by default (the built-in defaults apply).

        Only the fields passed to ``StepResources(...)`` count as declared: they override the
        config's ``defaults``, and the config's ``steps.NAME`` overrides them.
        """
        return StepResources()

    @abstractmethod
    def execute(self, context: C) -> StepResult:
        """Do the step's work against the shared context.

        Return ``StepResult(success=False, error=...)`` or raise to fail the run; the steps
        that ran are then rolled back in reverse order, this one included.
        """

    def can_skip(self, context: C) -> bool:
        """Return True to skip the step for this context (it is then neither run nor rolled back)."""
        return False

    def rollback(self, context: C, result: StepResult) -> None:
        """Undo what ``execute`` did; called with this step's own result on failure."""
        return None


def is_step(obj: object) -> bool:
    """True for an instance that meets the step protocol (a class is not a step)."""
    return not isinstance(obj, type) and isinstance(obj, StepProtocol) and callable(getattr(obj, "execute", None))


def can_skip(step: Any, context: Any) -> bool:
    """``step.can_skip(context)``, or False for a step without one."""
    method = getattr(step, "can_skip", None)
    return bool(method(context)) if method is not None else False


def rollback(step: Any, context: Any, result: Any) -> None:
    """``step.rollback(context, result)``, or nothing for a step without one."""
    method = getattr(step, "rollback", None)
    if method is not None:
        method(context, result)


def progress_proportion(step: Any) -> int:
    """``step.progress_proportion``, or 0 for a step without one."""
    return getattr(step, "progress_proportion", 0) or 0


def declared_resources(step: Any) -> StepResources:
    """The step's ``resources`` layer, or an empty one for a step without it."""
    declared = getattr(step, "resources", None)
    return declared if isinstance(declared, StepResources) else StepResources()
