"""An action: validated params + a registry of steps + a context, run by an executor."""

from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from os import PathLike
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from synapse_steps.config import ExecutorConfig, load_config
from synapse_steps.context import BaseStepContext
from synapse_steps.executor_factory import build_executor
from synapse_steps.orchestrator import BeforeStepHook, Orchestrator
from synapse_steps.progress import ProgressCallback
from synapse_steps.registry import StepRegistry
from synapse_steps.runtime import RuntimeContext

P = TypeVar("P", bound=BaseModel)
C = TypeVar("C", bound=BaseStepContext)


class BaseAction(ABC, Generic[P, C]):
    """Subclass a specialized action (train, upload) and override ``setup_steps``.

    ``params`` may be the pydantic model or a plain mapping validated against it (the
    model is taken from the generic argument, ``BaseTrainAction[MyParams]``, or from a
    ``params_model`` class attribute). ``config`` picks the executor; by default it
    comes from ``SYNAPSE_STEPS_*`` environment variables, i.e. in-process.
    """

    context_class: type[C]
    params_model: type[P]

    def __init__(
        self,
        params: P | dict[str, Any],
        runtime_ctx: RuntimeContext | None = None,
        *,
        config: ExecutorConfig | str | PathLike[str] | None = None,
        progress_callback: ProgressCallback | None = None,
    ) -> None:
        model = self._resolve_params_model()
        self.params: P = params if isinstance(params, model) else model.model_validate(params)
        self.runtime_ctx = runtime_ctx if runtime_ctx is not None else RuntimeContext()
        self.config = config if isinstance(config, ExecutorConfig) else load_config(config)
        self.progress_callback = progress_callback
        self.context: C | None = None
        # What ``synapse-steps resume RUN_ID`` imports to rebuild a journaled run (the CLI sets its TARGET).
        self.target = f"{type(self).__module__}:{type(self).__qualname__}"

    @abstractmethod
    def setup_steps(self, registry: StepRegistry[C]) -> None:
        """Register this action's steps in order."""

    def create_context(self) -> C:
        """The run's context; override to fill action-specific fields."""
        return self.context_class(runtime_ctx=self.runtime_ctx, params=self.params.model_dump())  # type: ignore[call-arg]

    def build_orchestrator(
        self, progress_callback: ProgressCallback | None = None, before_step: BeforeStepHook | None = None
    ) -> Orchestrator[C]:
        """The registry, context and configured executor that ``run()`` uses, wired but not run.

        For callers that need more than the summary (the CLI reads ``records`` and the
        executor's ``step_nodes``). Sets ``self.context``.
        """
        registry: StepRegistry[C] = StepRegistry()
        self.setup_steps(registry)
        self.context = self.create_context()
        executor = build_executor(self.config)
        callback = progress_callback or self.progress_callback
        return Orchestrator(
            registry,
            self.context,
            callback,
            before_step,
            executor=executor,
            journal=self.config.journal or False,
            target=self.target,
            params=self.params.model_dump(mode="json"),
        )

    def resume(self, run_id: str, *, force: bool = False) -> dict[str, Any]:
        """Finish the journaled run ``run_id`` whose driver died (see ``Orchestrator.resume``).

        Needs a journal: ``config.journal`` (``SYNAPSE_STEPS_JOURNAL``), else the per-user default.
        """
        return self._journaled_orchestrator().resume(run_id, force=force)

    def rollback_run(self, run_id: str, *, force: bool = False) -> dict[str, Any]:
        """Undo the journaled run ``run_id`` whose driver died (see ``Orchestrator.rollback_run``)."""
        return self._journaled_orchestrator().rollback_run(run_id, force=force)

    def _journaled_orchestrator(self) -> Orchestrator[C]:
        if not self.config.journal:
            from synapse_steps.journal import default_url

            self.config = self.config.model_copy(update={"journal": default_url()})
        return self.build_orchestrator()

    def run(self, *, show_progress: bool = False) -> dict[str, Any]:
        """Build the registry and context, then execute with the configured executor.

        The context stays readable as ``self.context`` afterwards, success or failure.
        ``show_progress=True`` shows the run as the ``synapse-steps`` command does: a
        live bar (overall progress, ETA, the step and its own progress) in a terminal,
        timestamped step lines anywhere else, then a summary table; Ctrl-C leaves a
        clean terminal.

        Example:
            >>> summary = MyAction({"epochs": 3}).run(show_progress=True)  # doctest: +SKIP
        """
        if not show_progress:
            return self.build_orchestrator().execute()
        from synapse_steps.display import view_for_stdout
        from synapse_steps.watch import watch_run

        with view_for_stdout() as view:
            return watch_run(self, view)

    def set_progress(self, current: float, total: float, step: str | None = None) -> None:
        """Report progress as synapse-sdk's actions do; with no ``step`` it is the job's overall progress.

        So the SDK's wiring, ``progress_callback=lambda c, t: self.set_progress(c, t)``, records
        the orchestrator's weighted overall percent in ``runtime_ctx.progress[None]``, while each
        step's own progress stays under its name.
        """
        self.runtime_ctx.set_progress(current, total, step)

    @classmethod
    def _resolve_params_model(cls) -> type[P]:
        explicit = cls.__dict__.get("params_model") or getattr(cls, "params_model", None)
        if isinstance(explicit, type) and issubclass(explicit, BaseModel):
            return explicit  # type: ignore[return-value]  # a subclass of P's bound, checked at run time
        for klass in cls.__mro__:
            for base in getattr(klass, "__orig_bases__", ()):
                for arg in typing.get_args(base):
                    if isinstance(arg, type) and issubclass(arg, BaseModel):
                        return arg  # type: ignore[return-value]  # as above
        raise TypeError(f"{cls.__name__} needs a params model: subclass e.g. BaseTrainAction[MyParams]")
