"""synapse-sdk's step API surface on this package: protocol steps, SDK parameter names,
messages and codes, env getters, the runtime's logger, and step attribution of events."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from synapse_steps import (
    BaseStep,
    BaseStepContext,
    LoggingStep,
    MessageCode,
    Orchestrator,
    RuntimeContext,
    StepDefinitionError,
    StepExecutor,
    StepFailedError,
    StepRegistry,
    StepResult,
    TimingStep,
    ValidationStep,
)
from tests.conftest import ray_config

pytestmark = pytest.mark.timeout(120)


@dataclass
class SurfaceContext(BaseStepContext):
    seen: list[Any] = field(default_factory=list)


@dataclass
class ForeignResult:
    """A result type that is not this package's StepResult, with the same fields (like the SDK's)."""

    success: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    rollback_data: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False


class PlainStep:
    """Meets the step protocol without inheriting from BaseStep; no can_skip, no rollback."""

    name = "plain"
    progress_weight = 1.0

    def execute(self, context: SurfaceContext) -> ForeignResult:
        context.seen.append("plain")
        return ForeignResult(data={"n": 1})


class Uploaded(MessageCode):
    UPLOADED = ("Uploaded {count} files", "success")


class ChattyStep(BaseStep[SurfaceContext]):
    """Uses every piece of SDK surface a real step touches."""

    name = "chatty"
    progress_weight = 1.0

    def execute(self, context: SurfaceContext) -> StepResult:
        rt = context.runtime_ctx
        context.log_message("Processing {count} items", count=3)
        context.log_message(Uploaded.UPLOADED, count=2)
        rt.logger.info("info line")
        rt.logger.warning("warning line")
        rt.logger.error("error line")
        rt.logger.set_progress(1, 2)
        rt.log_metric("train", "loss", 0.5, accuracy=0.9)
        rt.log_dev_event("dev", {"k": 1})
        context.log("custom", {"a": 1})
        context.set_metrics({"m": 1})
        context.mark_user_failure_emitted()
        context.seen.append((rt.logger.get_step(), rt.env.get_str("MODE"), rt.env.get_int("BATCH"),
                             rt.checkpoint, rt.client))
        return StepResult()


def observed(rt: RuntimeContext) -> list[tuple[Any, ...]]:
    return [(e.kind, e.name, e.step, e.level, e.data) for e in rt.events]


EXPECTED_EVENTS = [
    ("message", None, "chatty", "info", {"message": "Processing 3 items"}),
    ("message", None, "chatty", "success", {"message": "Uploaded 2 files", "key": "UPLOADED"}),
    ("message", None, "chatty", "info", {"message": "info line"}),
    ("message", None, "chatty", "warning", {"message": "warning line"}),
    ("message", None, "chatty", "error", {"message": "error line"}),
    ("event", "metric", "chatty", "info", {"category": "train", "key": "loss", "value": 0.5,
                                           "metrics": {"accuracy": 0.9}}),
    ("event", "dev_event", "chatty", "debug", {"message": "dev", "data": {"k": 1}}),
    ("event", "custom", "chatty", "info", {"a": 1}),
    ("metrics", None, "chatty", "info", {"m": 1}),
]


def test_protocol_step_and_foreign_result_run_on_both_executors(make_executor: Callable[[], StepExecutor]) -> None:
    registry: StepRegistry[SurfaceContext] = StepRegistry()
    registry.register(PlainStep())
    ctx = SurfaceContext(runtime_ctx=RuntimeContext())
    summary = Orchestrator(registry, ctx, executor=make_executor()).execute()
    assert summary == {"success": True, "steps_executed": 1, "steps_total": 1}
    assert ctx.seen == ["plain"]
    assert (type(ctx.step_results[0]).__name__, ctx.step_results[0].data) == ("ForeignResult", {"n": 1})


def test_protocol_step_without_rollback_is_rolled_back_as_a_no_op(make_executor: Callable[[], StepExecutor]) -> None:
    registry: StepRegistry[SurfaceContext] = StepRegistry()
    registry.register(PlainStep())
    registry.register(ValidationStep(lambda c: (False, "no data"), name="check"))
    ctx = SurfaceContext(runtime_ctx=RuntimeContext())
    with pytest.raises(StepFailedError, match=r"^Step 'check' failed: no data$"):
        Orchestrator(registry, ctx, executor=make_executor()).execute()
    assert [r.success for r in ctx.step_results] == [True, False]
    assert ctx.errors == []


def test_registry_names_what_is_not_a_step() -> None:
    with pytest.raises(StepDefinitionError, match=r"can only register steps .* got int"):
        StepRegistry().register(3)  # type: ignore[arg-type]
    with pytest.raises(StepDefinitionError, match="got type"):
        StepRegistry().register(PlainStep)  # type: ignore[arg-type]


def test_sdk_parameter_names_work_as_keywords() -> None:
    class Named(BaseStep[SurfaceContext]):
        name = "named"
        progress_weight = 1.0

        def execute(self, context: SurfaceContext) -> StepResult:
            return StepResult(data={"ok": True})

    step, ctx = Named(), SurfaceContext(runtime_ctx=RuntimeContext())
    assert step.execute(context=ctx).data == {"ok": True}
    assert step.can_skip(context=ctx) is False
    assert step.rollback(context=ctx, result=StepResult()) is None


def test_sdk_surface_in_a_step_is_attributed_to_it(make_executor: Callable[[], StepExecutor]) -> None:
    registry: StepRegistry[SurfaceContext] = StepRegistry()
    registry.register(ChattyStep())
    rt = RuntimeContext(env={"MODE": "fast", "BATCH": "8"}, checkpoint={"category": "base", "path": "/m.pt"})
    ctx = SurfaceContext(runtime_ctx=rt)
    Orchestrator(registry, ctx, executor=make_executor()).execute()
    assert observed(rt) == EXPECTED_EVENTS
    assert rt.progress["chatty"] == (1, 2)
    assert ctx.seen == [("chatty", "fast", 8, {"category": "base", "path": "/m.pt"}, None)]
    assert ctx.user_failure_message_emitted is True
    assert ctx.current_step is None and rt.logger.get_step() is None


def test_log_message_deprecated_context_and_i18n_dict() -> None:
    rt = RuntimeContext(language="ko")
    ctx = SurfaceContext(runtime_ctx=rt)
    with pytest.warns(DeprecationWarning, match="'context' parameter is deprecated"):
        ctx.log_message("careful", context="warning")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ctx.log_message({"en": "{n} files", "ko": "{n}개 파일"}, n=2)
        ctx.log_message("kept {as} is")  # no kwargs: used as is, like the SDK
    assert [(e.level, e.data["message"]) for e in rt.events] == [
        ("warning", "careful"), ("info", "2개 파일"), ("info", "kept {as} is")
    ]
    with pytest.raises(ValueError, match="unknown message level 'loud'"):
        ctx.log_message("x", "loud")


def test_env_getters_follow_the_sdk_conversions() -> None:
    env = RuntimeContext(env={"A": "1", "B": "Yes", "C": "x, y,,z", "D": 2.5}).env
    assert env["A"] == "1"
    assert (env.get_str("A"), env.get_int("A"), env.get_float("D"), env.get_bool("B"), env.get_list("C")) == (
        "1", 1, 2.5, True, ["x", "y", "z"]
    )
    assert (env.get_str("NO"), env.get_int("NO", 7), env.get_bool("NO", False), env.get_list("D")) == (
        None, 7, False, None
    )


def test_utility_steps_match_the_sdk_behaviour() -> None:
    class Inner(BaseStep[SurfaceContext]):
        name = "inner"
        progress_weight = 0.4

        def execute(self, context: SurfaceContext) -> StepResult:
            return StepResult(data={"x": 1})

        def rollback(self, context: SurfaceContext, result: StepResult) -> None:
            context.seen.append("inner rolled back")

    registry: StepRegistry[SurfaceContext] = StepRegistry()
    registry.register(LoggingStep(Inner()))
    registry.register(TimingStep(Inner()))
    registry.register(ValidationStep(lambda c: (False, "bad"), progress_weight=0.2))
    assert registry.get_step_names() == ["logged_inner", "timed_inner", "validate"]
    assert [s.progress_weight for s in registry.get_steps()] == [0.4, 0.4, 0.2]
    ctx = SurfaceContext(runtime_ctx=RuntimeContext())
    with pytest.raises(StepFailedError, match=r"^Step 'validate' failed: bad$"):
        Orchestrator(registry, ctx).execute()
    events = [(e.name, e.step, {k: v for k, v in e.data.items() if k != "elapsed"}) for e in ctx.runtime_ctx.events]
    assert events == [
        ("step_start", "logged_inner", {"step": "inner"}),
        ("step_end", "logged_inner", {"step": "inner", "success": True, "skipped": False}),
        ("step_rollback", "logged_inner", {"step": "inner"}),
    ]
    assert set(ctx.step_results[1].data) == {"x", "duration_seconds"}
    assert ctx.seen == ["inner rolled back", "inner rolled back"]


def test_the_sdk_progress_wiring_records_the_jobs_overall_progress(executor_kind: str) -> None:
    """``progress_callback=lambda c, t: self.set_progress(c, t)``, as synapse-sdk's actions wire it."""
    from pydantic import BaseModel

    from synapse_steps import BaseTrainAction, ExecutorConfig, TrainContext

    class Ticks(BaseStep[TrainContext]):
        def __init__(self, name: str, weight: float) -> None:
            self._name, self._weight = name, weight

        @property
        def name(self) -> str:
            return self._name

        @property
        def progress_weight(self) -> float:
            return self._weight

        def execute(self, context: TrainContext) -> StepResult:
            for i in range(1, 5):
                context.set_progress(i, 4)
            return StepResult()

    class Params(BaseModel):
        epochs: int = 1

    class Wired(BaseTrainAction[Params]):
        def setup_steps(self, registry: StepRegistry[TrainContext]) -> None:
            registry.register(Ticks("load", 0.25))
            registry.register(Ticks("train", 0.75))

    rt = RuntimeContext()
    overall: list[tuple[float, float]] = []
    rt.subscribe(lambda e: overall.append((e.data["current"], e.data["total"]))
                 if e.kind == "progress" and e.step is None else None)
    config = ExecutorConfig(executor="local") if executor_kind == "local" else ray_config()
    action = Wired({}, rt, config=config)
    action.progress_callback = lambda c, t: action.set_progress(c, t)
    action.run()
    percents = [current for current, total in overall if total == 100]
    assert len(percents) == len(overall) and percents == sorted(set(percents))
    # in-process every step tick moves it; on Ray ticks are coalesced, step ends always arrive
    assert {25, 100} <= set(percents) <= {6, 12, 18, 25, 43, 62, 81, 100}
    if executor_kind == "local":
        assert percents == [6, 12, 18, 25, 43, 62, 81, 100]
    assert rt.progress == {None: (100, 100), "load": (4, 4), "train": (4, 4)}
