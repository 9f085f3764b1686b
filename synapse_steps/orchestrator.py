"""Runs a registry's steps in order with weighted progress and reverse rollback."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from typing import Any, Generic, NoReturn, TypeVar

from synapse_steps.config import ExecutorConfig, build_executor, load_config
from synapse_steps.context import BaseStepContext
from synapse_steps.errors import StepFailedError
from synapse_steps.executor import StepExecutor
from synapse_steps.interrupts import sigterm_as_interrupt
from synapse_steps.local_executor import LocalExecutor
from synapse_steps.progress import ProgressCallback, WeightedProgress, validate_weights
from synapse_steps.registry import StepRegistry
from synapse_steps.result import StepResult
from synapse_steps.runtime import RuntimeEvent
from synapse_steps.step import BaseStep, can_skip

C = TypeVar("C", bound=BaseStepContext)
BeforeStepHook = Callable[[str, Any], None]


@dataclass
class StepRecord:
    """What happened to one step in the last run, for summaries (CLI table, logs).

    ``status``: ``pending`` (never reached), ``running``, ``succeeded``, ``skipped``
    or ``failed``; ``rollback``: ``None`` (not rolled back), ``done`` or ``failed``.
    """

    name: str
    status: str = "pending"
    duration_s: float | None = None
    rollback: str | None = None


class Orchestrator(Generic[C]):
    """Execute steps in order; on the first failure roll back every executed step.

    ``progress_callback(current, total)`` receives whole percents out of 100 as the
    weighted overall progress moves; ``progress`` holds the exact fraction.
    ``before_step(name, ctx)`` runs on the caller's side before each step's skip check.
    ``executor`` decides where steps run (default: in this process).

    Example:
        >>> orchestrator = Orchestrator(registry, context)   # doctest: +SKIP
        >>> orchestrator.execute()                           # doctest: +SKIP
        {'success': True, 'steps_executed': 3, 'steps_total': 3}
    """

    def __init__(
        self,
        registry: StepRegistry[C],
        context: C,
        progress_callback: ProgressCallback | None = None,
        before_step: BeforeStepHook | None = None,
        *,
        executor: StepExecutor | None = None,
    ) -> None:
        self._registry = registry
        self._context = context
        self._progress_callback = progress_callback
        self._before_step = before_step
        self._executor = executor if executor is not None else self._default_executor()
        self._tracker = WeightedProgress([])
        self._executed: list[tuple[int, BaseStep[C], StepResult]] = []
        self.records: list[StepRecord] = []

    @classmethod
    def from_config(
        cls,
        registry: StepRegistry[C],
        context: C,
        config: ExecutorConfig | str | PathLike[str] | None = None,
        progress_callback: ProgressCallback | None = None,
        before_step: BeforeStepHook | None = None,
    ) -> Orchestrator[C]:
        """An orchestrator whose executor comes from configuration (file, env, or model).

        With ``config=None`` the settings come from ``SYNAPSE_STEPS_*`` environment
        variables alone, so ``SYNAPSE_STEPS_EXECUTOR=ray`` moves a run onto Ray.
        """
        settings = config if isinstance(config, ExecutorConfig) else load_config(config)
        executor = build_executor(settings, registry.get_step_names())
        return cls(registry, context, progress_callback, before_step, executor=executor)

    def _default_executor(self) -> StepExecutor:
        """In-process, unless ``SYNAPSE_STEPS_EXECUTOR`` (and friends) say otherwise.

        So the seed's plain ``Orchestrator(registry, context)`` moves onto Ray by
        setting one environment variable, like an action's ``run()``.
        """
        config = load_config()
        if config.executor == "local":
            return LocalExecutor()
        return build_executor(config, self._registry.get_step_names())

    @property
    def registry(self) -> StepRegistry[C]:
        return self._registry

    @property
    def context(self) -> C:
        return self._context

    @property
    def executor(self) -> StepExecutor:
        return self._executor

    @property
    def progress(self) -> float:
        """Overall weighted progress of the current or last run, 0.0 to 1.0."""
        return self._tracker.overall

    def execute(self) -> dict[str, Any]:
        """Run every step. Returns a summary; raises StepFailedError after rolling back."""
        ctx = self._context
        steps = self._registry.get_steps()
        self._tracker = WeightedProgress(validate_weights(steps), self._progress_callback)
        self._executed = []
        self.records = [StepRecord(step.name) for step in steps]
        subscribe = getattr(ctx.runtime_ctx, "subscribe", None)  # optional: synapse-sdk's runtime has none
        unsubscribe = subscribe(self._on_event) if subscribe is not None else None
        try:
            self._run_all(steps)
        finally:
            if unsubscribe is not None:
                unsubscribe()
        return {"success": True, "steps_executed": len(self._executed), "steps_total": len(steps)}

    def _run_all(self, steps: list[BaseStep[C]]) -> None:
        ctx = self._context
        self._executor.open(ctx, steps)  # may start Ray, which installs its own SIGTERM handler
        try:
            with sigterm_as_interrupt():
                for order, step in enumerate(steps):
                    ctx._set_current_step(step.name, order)
                    self._tracker.begin(order)
                    self._run_one(step, order)
                    self._tracker.finish(order)
        finally:
            ctx._set_current_step(None)
            self._executor.close()

    def _run_one(self, step: BaseStep[C], order: int) -> None:
        ctx = self._context
        record = self.records[order]
        record.status = "running"
        started = time.monotonic()
        try:
            skip = self._before_running(step, order)
            if skip:
                self._record(order, step, StepResult(success=True, skipped=True))
                return
            try:
                result = self._executor.execute(step, ctx)
            except KeyboardInterrupt as interrupt:
                error = f"interrupted while the step was running ({interrupt or 'Ctrl-C'})"
                self._record(order, step, StepResult(success=False, error=error))
                self._fail(step, ctx.step_results[-1], interrupt)
            except Exception as exc:  # noqa: BLE001 - an executor fault fails the step; we still roll back
                error = f"executor error: {type(exc).__name__}: {exc}"
                result = StepResult(success=False, error=error, traceback=traceback.format_exc())
            self._record(order, step, result)
            if not result.success:
                self._fail(step, result)
        finally:
            record.duration_s = time.monotonic() - started

    def _record(self, order: int, step: BaseStep[C], result: StepResult, executed: bool = True) -> None:
        """Keep a step's result; a step that ran (or started) is rolled back on failure."""
        self._context.step_results.append(result)
        self.records[order].status = "skipped" if result.skipped else "succeeded" if result.success else "failed"
        if executed and not result.skipped:
            self._executed.append((order, step, result))

    def _before_running(self, step: BaseStep[C], order: int) -> bool:
        """Run the ``before_step`` hook and the skip check; an error in either fails the step."""
        ctx = self._context
        stage = "before_step hook"
        try:
            if self._before_step is not None:
                self._before_step(step.name, ctx)
            stage = "can_skip"
            return can_skip(step, ctx)
        except Exception as exc:  # noqa: BLE001 - fails this step the way execute would
            error = f"{stage} raised {type(exc).__name__}: {exc}"
            result = StepResult(success=False, error=error, traceback=traceback.format_exc())
            self._record(order, step, result, executed=False)
            self._fail(step, result)

    def _fail(self, step: BaseStep[C], result: StepResult, interrupt: KeyboardInterrupt | None = None) -> NoReturn:
        """Roll back, then raise (re-raising Ctrl-C as itself)."""
        self._tracker.halt()
        rollback_errors = self._rollback()
        if interrupt is not None:
            raise interrupt
        message = f"Step '{step.name}' failed: {result.error}"
        if rollback_errors:
            message += f" ({len(rollback_errors)} rollback(s) failed: {'; '.join(rollback_errors)})"
        raise StepFailedError(message, step.name, result, rollback_errors)

    def _rollback(self) -> list[str]:
        """Undo executed steps last-first; a failing rollback is recorded, the rest still run."""
        ctx = self._context
        errors: list[str] = []
        for order, step, result in reversed(self._executed):
            ctx._set_current_step(step.name, order)
            try:
                self._executor.rollback(step, ctx, result)
                self.records[order].rollback = "done"
            except Exception as exc:  # noqa: BLE001 - best effort: keep unwinding
                message = f"Rollback failed for step '{step.name}': {exc}"
                ctx.errors.append(message)
                errors.append(message)
                self.records[order].rollback = "failed"
        return errors

    def _on_event(self, event: RuntimeEvent) -> None:
        ctx = self._context
        if event.kind == "progress" and event.step is not None and event.step == ctx.current_step:
            order = ctx.current_step_order
            if order is not None:
                self._tracker.update(order, event.data["current"], event.data["total"])
