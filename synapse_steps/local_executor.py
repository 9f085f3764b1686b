"""The default executor: steps run in this process on the caller's own context."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from synapse_steps import interrupts
from synapse_steps.attempt import run_execute
from synapse_steps.context import BaseStepContext
from synapse_steps.errors import RollbackTimeoutError
from synapse_steps.executor import StepExecutor
from synapse_steps.resources import DEFAULT_ROLLBACK_TIMEOUT_S, StepResources
from synapse_steps.result import StepResult
from synapse_steps.step import BaseStep, rollback

if TYPE_CHECKING:
    from synapse_steps.config import ExecutorConfig

# How often the waiting thread wakes while a rollback runs, so signals are handled promptly.
_JOIN_SLICE_S = 0.05


class LocalExecutor(StepExecutor):
    """Zero-copy, in-process; step resources are ignored. The overhead baseline.

    ``config`` (optional) supplies per-step rollback policies (``rollback_timeout_s``,
    ``rollback_retries``) from the config file's ``defaults`` and ``steps``.
    """

    def __init__(self, config: ExecutorConfig | None = None) -> None:
        self._config = config

    @property
    def config(self) -> ExecutorConfig | None:
        """The configuration this executor was built from (journaled with a run), if any."""
        return self._config

    def open(self, context: BaseStepContext, steps: Sequence[BaseStep[Any]]) -> None:
        """Refuse config overrides for steps the run lacks, and bad declarations, before any step starts.

        Otherwise a bad ``resources`` declaration would only surface in the middle of a
        rollback, the first time the in-process run reads it.
        """
        if self._config is not None:
            self._config.check_step_names([s.name for s in steps])
        for step in steps:
            self.resources_for(step)

    def resources_for(self, step: BaseStep[Any]) -> StepResources:
        """The config's layered resources for the step; only the rollback limits apply in-process."""
        return self._config.resources_for(step) if self._config is not None else super().resources_for(step)

    def execute(self, step: BaseStep[Any], context: BaseStepContext) -> StepResult:
        """Run ``execute`` in this thread; an exception becomes a failed result with its traceback."""
        return run_execute(step, context)

    def rollback(self, step: BaseStep[Any], context: BaseStepContext, result: StepResult) -> None:
        """Run the rollback on a helper thread so it is bounded by ``rollback_timeout_s``.

        The caller's thread waits in short joins, so signals stay handled. A thread
        cannot be killed: a rollback past its limit is reported as failed and may go
        on running in the background (on Ray it is stopped).
        """
        limit = self.resources_for(step).rollback_timeout_s or DEFAULT_ROLLBACK_TIMEOUT_S
        raised: list[BaseException] = []

        def run() -> None:
            try:
                rollback(step, context, result)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                raised.append(exc)

        worker = threading.Thread(target=run, name=f"synapse-steps-rollback-{step.name}", daemon=True)
        deadline = time.monotonic() + limit
        guard = interrupts.current()
        worker.start()
        while worker.is_alive():
            guard.check_abandon()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RollbackTimeoutError(
                    f"rollback of step '{step.name}' did not finish within {limit:g}s (rollback_timeout_s); "
                    "an in-process rollback cannot be stopped and may still be running"
                )
            worker.join(min(_JOIN_SLICE_S, remaining))
        if raised:
            raise raised[0]
