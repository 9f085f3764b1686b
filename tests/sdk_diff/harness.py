"""One scenario, three runners: synapse-sdk's orchestrator, this package in-process, and on Ray.

A scenario is a function of a ``Kit`` (the step API of one package) that builds a
registry and a context; ``observe`` runs it on a runner and returns every observable
in one comparable shape. Imported only when Python >= 3.12 and synapse-sdk are present.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import synapse_sdk.plugins.steps as sdk_steps
from synapse_sdk.loggers import BaseLogger
from synapse_sdk.plugins.actions.train.context import TrainContext as SdkTrainContext
from synapse_sdk.plugins.context import PluginEnvironment
from synapse_sdk.plugins.context import RuntimeContext as SdkRuntimeContext

import synapse_steps as ours
from synapse_steps.actions.train import TrainContext as OurTrainContext

RESULT_FIELDS = ("success", "data", "error", "rollback_data", "skipped")
TIMINGS = ("elapsed", "duration_seconds")


@dataclass
class SdkDiffContext(sdk_steps.BaseStepContext):
    trail: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class OurDiffContext(ours.BaseStepContext):
    trail: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


class RecordingLogger(BaseLogger):
    """A synapse-sdk logger that keeps what it is told (the SDK's runtime delegates everything to it)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[Any, ...]] = []
        self.percent: dict[str | None, float] = {}

    def _log_impl(self, event: str, data: dict[str, Any], file: str | None, step: str | None, level: Any = None) -> None:
        self.records.append((event, step, level.value if level is not None else "info", dict(data)))

    def _on_progress(self, progress: Any, step: str | None) -> None:
        self.percent[step] = progress.percent

    def _on_metrics(self, step: str, metrics: dict[str, Any]) -> None:
        self.records.append(("metrics", step, "info", dict(metrics)))


@dataclass(frozen=True)
class Kit:
    """The step API of one package, as a scenario sees it."""

    name: str
    BaseStep: type
    StepResult: type
    StepRegistry: type
    Context: type
    TrainContext: type
    LoggingStep: type
    TimingStep: type
    ValidationStep: type
    sdk_runtime: bool  # the runtime is synapse-sdk's RuntimeContext (with a RecordingLogger)

    def runtime(self, env: dict[str, Any], client: Any = None, checkpoint: dict[str, Any] | None = None) -> Any:
        if self.sdk_runtime:
            return SdkRuntimeContext(logger=RecordingLogger(), env=PluginEnvironment(dict(env)), job_id="job-1",
                                     client=client, checkpoint=checkpoint)
        return ours.RuntimeContext(env=env, job_id="job-1", client=client, checkpoint=checkpoint)


SDK_KIT = Kit("sdk", sdk_steps.BaseStep, sdk_steps.StepResult, sdk_steps.StepRegistry, SdkDiffContext,
              SdkTrainContext, sdk_steps.LoggingStep, sdk_steps.TimingStep, sdk_steps.ValidationStep, True)
OUR_KIT = Kit("ours", ours.BaseStep, ours.StepResult, ours.StepRegistry, OurDiffContext, OurTrainContext,
              ours.LoggingStep, ours.TimingStep, ours.ValidationStep, False)
# synapse-sdk's own step classes (base, result, utility steps) and its RuntimeContext, run by this
# package: only the registry, the contexts' base class and the orchestrator are ours.
SDK_OBJECTS_KIT = Kit("sdk-objects", sdk_steps.BaseStep, sdk_steps.StepResult, ours.StepRegistry, OurDiffContext,
                      OurTrainContext, sdk_steps.LoggingStep, sdk_steps.TimingStep, sdk_steps.ValidationStep, True)


@dataclass
class Observed:
    """Everything a caller can see after a run, normalized only where the README documents a difference."""

    outcome: tuple[Any, ...]
    step_results: list[dict[str, Any]]
    errors: list[str]
    trail: list[str]
    values: dict[str, Any]
    events: list[tuple[Any, ...]]
    progress: dict[str | None, float]
    user_failure_message_emitted: bool
    callback: list[tuple[int, int]] = field(default_factory=list)
    exception_type: str | None = None
    error_causes: list[str] = field(default_factory=list)


def _timing_free(data: dict[str, Any]) -> dict[str, Any]:
    return {k: ("<seconds>" if k in TIMINGS and isinstance(v, float) else v) for k, v in data.items()}


def _results(ctx: Any) -> list[dict[str, Any]]:
    out = []
    for result in ctx.step_results:
        row = {name: getattr(result, name) for name in RESULT_FIELDS}
        row["data"] = _timing_free(row["data"])
        out.append(row)
    return out


def _events(runtime: Any) -> tuple[list[tuple[Any, ...]], dict[str | None, float]]:
    if isinstance(runtime.logger, RecordingLogger):
        events = [(e, s, lv, _timing_free(d)) for e, s, lv, d in runtime.logger.records]
        return events, dict(runtime.logger.percent)
    events = []
    for e in runtime.events:
        if e.kind == "message":
            data = {"content": e.data["message"], **({"key": e.data["key"]} if "key" in e.data else {})}
            events.append(("message", e.step, e.level, data))
        elif e.kind == "metrics":
            events.append(("metrics", e.step, "info", dict(e.data)))
        elif e.kind == "event":
            events.append((e.name, e.step, e.level, _timing_free(e.data)))
    percent = {step: round(c / t * 100, 2) for step, (c, t) in runtime.progress.items() if step is not None}
    return events, percent


ROLLBACK_CAUSE = re.compile(r"^(Rollback failed for step '[^']*'): (.+)$")


def observe(scenario: Callable[[Kit], tuple[Any, Any]], kit: Kit, runner: str) -> Observed:
    """Run ``scenario(kit)`` on ``runner`` ("sdk", "local" or "ray")."""
    registry, ctx = scenario(kit)
    calls: list[tuple[int, int]] = []
    exception_type = None
    try:
        if runner == "sdk":
            returned = sdk_steps.Orchestrator(registry, ctx, progress_callback=lambda c, t: calls.append((c, t))).execute()
        else:
            executor = ours.LocalExecutor() if runner == "local" else _ray_executor()
            orchestrator = ours.Orchestrator(registry, ctx, lambda c, t: calls.append((c, t)), executor=executor)
            returned = orchestrator.execute()
        outcome: tuple[Any, ...] = ("returned", returned)
    except RuntimeError as exc:
        outcome = ("raised RuntimeError", str(exc))
        exception_type = type(exc).__name__
    errors, causes = [], []
    for entry in ctx.errors:
        match = ROLLBACK_CAUSE.match(entry)
        errors.append(match.group(1) if match else entry)
        causes.append(match.group(2) if match else "")
    events, progress = _events(ctx.runtime_ctx)
    return Observed(outcome, _results(ctx), errors, list(ctx.trail) if hasattr(ctx, "trail") else [],
                    dict(getattr(ctx, "values", {})), events, progress, ctx.user_failure_message_emitted,
                    calls, exception_type, causes)


def _ray_executor() -> Any:
    from ray_backend import RayExecutor
    from tests.conftest import ray_config

    return RayExecutor(ray_config())
