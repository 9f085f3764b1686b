"""The executor seam: where one step's ``execute`` or ``rollback`` runs.

The orchestrator owns order, skips, results, progress arithmetic and the rollback
sequence. An executor owns placement and transport: it runs one step against the
caller's context and, when it returns — or raises — the caller's context object
holds the step's latest state, so the orchestrator never knows whether the step ran
in this process or on another machine. Steps report progress and events through
``ctx.runtime_ctx``; an executor that runs steps elsewhere replays those events
into the caller's runtime context while the step runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from synapse_steps.context import BaseStepContext
from synapse_steps.resources import StepResources, resolve
from synapse_steps.result import StepResult
from synapse_steps.step import BaseStep, declared_resources


class StepExecutor(ABC):
    """Runs steps for one orchestrator run at a time: ``open`` → steps → ``close``."""

    def open(self, context: BaseStepContext, steps: Sequence[BaseStep[Any]]) -> None:
        """Prepare a run. Raise here (before any step) for problems found up front."""

    @abstractmethod
    def execute(self, step: BaseStep[Any], context: BaseStepContext) -> StepResult:
        """Run ``step.execute``. Step errors come back as a failed result, not raised.

        Anything raised on the driver while the step runs (``KeyboardInterrupt``, a
        callback's ``CallbackError``) propagates only after the step is confirmed
        stopped and its latest state is in ``context``: a rollback never overlaps it.
        """

    @abstractmethod
    def rollback(self, step: BaseStep[Any], context: BaseStepContext, result: StepResult) -> None:
        """Run ``step.rollback(context, result)`` once, within ``rollback_timeout_s``; raise if it failed.

        The exception raised is the rollback's own (from a worker: with the worker's
        traceback as its ``__cause__``), or ``RollbackTimeoutError``.
        """

    def resources_for(self, step: BaseStep[Any]) -> StepResources:
        """The step's resolved resources and policies (rollback timeout and retries included).

        Without a config: the step's declaration over the built-in defaults.
        """
        return resolve(declared_resources(step))

    def never_started(self, step: BaseStep[Any]) -> bool:
        """True when the step was stopped before it began (queued): there is nothing to roll back."""
        return False

    def close(self) -> None:
        """End the run and release what ``open`` took, whatever the outcome."""

    def __enter__(self) -> StepExecutor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
