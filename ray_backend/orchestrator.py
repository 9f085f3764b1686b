"""RayOrchestrator: the Orchestrator with Ray as its default executor."""

from __future__ import annotations

from typing import TypeVar

from ray_backend.executor import RayExecutor
from synapse_steps.context import BaseStepContext
from synapse_steps.executor import StepExecutor
from synapse_steps.orchestrator import Orchestrator

C = TypeVar("C", bound=BaseStepContext)


class RayOrchestrator(Orchestrator[C]):
    """Same signature and result as ``Orchestrator``; steps run as Ray tasks.

    Example:
        >>> RayOrchestrator(registry, context).execute()   # doctest: +SKIP
        {'success': True, 'steps_executed': 3, 'steps_total': 3}
    """

    def _default_executor(self) -> StepExecutor:
        return RayExecutor()
