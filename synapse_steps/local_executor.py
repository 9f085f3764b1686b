"""The default executor: steps run in this process on the caller's own context."""

from __future__ import annotations

from synapse_steps.attempt import run_execute
from synapse_steps.context import BaseStepContext
from synapse_steps.executor import StepExecutor
from synapse_steps.result import StepResult
from synapse_steps.step import BaseStep, rollback


class LocalExecutor(StepExecutor):
    """Zero-copy, in-process; step resources are ignored. The overhead baseline."""

    def execute(self, step: BaseStep, context: BaseStepContext) -> StepResult:
        return run_execute(step, context)

    def rollback(self, step: BaseStep, context: BaseStepContext, result: StepResult) -> None:
        rollback(step, context, result)
