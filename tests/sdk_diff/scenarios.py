"""The differential scenarios, each written once against a ``Kit`` (the step API of one package).

Step bodies only use what synapse-sdk documents: ``context.log``, ``log_message``,
``set_progress``, ``set_metrics``, ``mark_user_failure_emitted`` and the runtime's
``logger``, ``log_metric``, ``log_dev_event``, ``env``, ``client`` and ``checkpoint``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from synapse_sdk.plugins.actions.train.action import BaseTrainAction, BaseTrainParams
from synapse_sdk.plugins.actions.train.log_messages import TrainLogMessageCode
from synapse_sdk.plugins.actions.train.steps import ModelUploadStep, TrainExecuteStep
from synapse_sdk.plugins.models.logger import LogLevel

from tests.sdk_diff.harness import Kit

Action = Callable[[Any], None]


def scripted(kit: Kit, name: str, weight: float = 1.0, *, proportion: int = 0, run: tuple[Action, ...] = (),
             skip: bool = False, undo: Action | None = None, result: dict[str, Any] | None = None) -> Any:
    """A step of ``kit``'s ``BaseStep`` that records its calls in ``context.trail`` and runs ``run``."""
    result_class = kit.StepResult  # the closure holds the classes it needs, not the kit (it travels to Ray)

    class Scripted(kit.BaseStep):  # type: ignore[name-defined,misc]
        @property
        def name(self) -> str:
            return name

        @property
        def progress_weight(self) -> float:
            return weight

        @property
        def progress_proportion(self) -> int:
            return proportion

        def can_skip(self, context: Any) -> bool:
            note(context, f"can_skip {name}")
            return skip

        def execute(self, context: Any) -> Any:
            note(context, f"execute {name}")
            for action in run:
                action(context)
            if result is not None:
                return result_class(**result)
            return result_class(data={"step": name}, rollback_data={"undo": name})

        def rollback(self, context: Any, step_result: Any) -> None:
            note(context, f"rollback {name} {step_result.rollback_data}")
            if undo is not None:
                undo(context)

    return Scripted()


def note(context: Any, entry: str) -> None:
    """Record a call in the context's ``trail`` (the train contexts have none)."""
    if hasattr(context, "trail"):
        context.trail.append(entry)


# --- what step bodies do (module functions: they travel to Ray workers by value) -------------
def ticks(context: Any, n: int) -> None:
    for i in range(1, n + 1):
        context.set_progress(i, n)


def talks(context: Any) -> None:
    context.log("loaded", {"rows": 3})
    context.log("detail", {"rows": 3}, level=LogLevel.DEBUG)
    context.log_message("Loaded {count} rows", count=3)
    context.log_message("Careful", LogLevel.WARNING)
    context.log_message(TrainLogMessageCode.TRAIN_MODEL_SAVED)
    context.set_metrics({"rows": 3})


def uses_runtime(context: Any) -> None:
    rt = context.runtime_ctx
    rt.logger.info("via logger")
    rt.logger.warning("logger warning")
    rt.logger.set_progress(1, 4)
    rt.log_metric("train", "loss", 0.25, accuracy=0.5)
    rt.log_dev_event("dev note", {"k": 1})
    context.values["seen"] = [rt.logger.get_step(), rt.env.get_str("MODE"), rt.env.get_int("BATCH"),
                              rt.checkpoint, rt.job_id]


def raises(context: Any) -> None:
    raise ValueError("boom")


def undo_fails(context: Any) -> None:
    raise OSError("undo failed")


def marks_failure(context: Any) -> None:
    context.log_message("Specific failure reason", LogLevel.ERROR)
    context.mark_user_failure_emitted()


ENV = {"MODE": "fast", "BATCH": "8"}
CHECKPOINT = {"category": "base", "path": "/models/base.pt", "id": 41}


def success_flow(kit: Kit) -> tuple[Any, Any]:
    registry = kit.StepRegistry()
    registry.register(scripted(kit, "load", 0.2, run=(partial(ticks, n=4), talks)))
    registry.register(scripted(kit, "process", 0.5, proportion=30, run=(uses_runtime, partial(ticks, n=2))))
    registry.register(scripted(kit, "save", 0.3, proportion=70))
    return registry, kit.Context(runtime_ctx=kit.runtime(ENV, checkpoint=CHECKPOINT))


def skip_fail_rollback(kit: Kit) -> tuple[Any, Any]:
    registry = kit.StepRegistry()
    registry.register(scripted(kit, "a", proportion=10, run=(talks,)))
    registry.register(scripted(kit, "b", proportion=10, skip=True))
    registry.register(scripted(kit, "c", proportion=10, undo=undo_fails))
    registry.register(scripted(kit, "d", proportion=10, run=(marks_failure, raises)))
    return registry, kit.Context(runtime_ctx=kit.runtime(ENV))


def failed_result(kit: Kit) -> tuple[Any, Any]:
    registry = kit.StepRegistry()
    registry.register(scripted(kit, "a"))
    registry.register(scripted(kit, "b", result={"success": False, "error": "nope", "rollback_data": {"partial": 2}}))
    registry.register(scripted(kit, "never"))
    return registry, kit.Context(runtime_ctx=kit.runtime(ENV))


def utility_steps(kit: Kit) -> tuple[Any, Any]:
    registry = kit.StepRegistry()
    registry.register(kit.LoggingStep(kit.TimingStep(scripted(kit, "a", 0.3, run=(talks,)))))
    registry.register(kit.LoggingStep(kit.ValidationStep(lambda context: (bool(context.trail), "nothing ran"),
                                                         name="check")))
    registry.register(kit.TimingStep(scripted(kit, "b", 0.3)))
    registry.register(kit.LoggingStep(scripted(kit, "c", 0.3, result={"success": False, "error": "c broke"})))
    return registry, kit.Context(runtime_ctx=kit.runtime(ENV))


def validation_fails(kit: Kit) -> tuple[Any, Any]:
    registry = kit.StepRegistry()
    registry.register(kit.LoggingStep(scripted(kit, "a")))
    registry.register(kit.ValidationStep(lambda context: (False, "No data loaded"), name="validate_data",
                                         progress_weight=0.1))
    return registry, kit.Context(runtime_ctx=kit.runtime(ENV))


# --- synapse-sdk's train action steps, unchanged, with a stub backend client ------------------
class StubClient:
    """The two backend calls ModelUploadStep makes."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def get_job(self, job_id: str) -> dict[str, Any]:
        return {"plugin_release": {"plugin": {"code": "digits"}, "version": "1.2.0"}}

    def create_model(self, data: dict[str, Any], file: Any = None) -> dict[str, Any]:
        if self.fail:
            raise ConnectionError("backend unavailable")
        return {"id": 7, "plugin": data.get("plugin"), "version": data.get("version"),
                "checkpoint": data.get("checkpoint"), "archive": Path(file).name}


class StubParams(BaseTrainParams):
    epochs: int = 2


class StubTrainAction(BaseTrainAction[StubParams]):
    """Trains nothing: writes a weights file and reports it, like a plugin's ``execute``."""

    work_dir: str = ""

    def execute(self, data_path: Path, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
        weights = Path(self.work_dir) / "weights"
        weights.mkdir(parents=True, exist_ok=True)
        (weights / "best.pt").write_text("weights")
        return {"weights_path": str(weights), "data": Path(data_path).name, "base": (checkpoint or {}).get("path")}


def _train(kit: Kit, client: StubClient) -> tuple[Any, Any]:
    work_dir = Path(tempfile.gettempdir()) / f"sdk-diff-train-{os.getpid()}"
    runtime = kit.runtime(ENV, client=client, checkpoint=CHECKPOINT)
    action = StubTrainAction(StubParams(dataset=3, name="digits"), runtime)
    action.work_dir = str(work_dir)
    registry = kit.StepRegistry()
    registry.register(scripted(kit, "prepare", 0.2, run=(partial(_prepared, path=str(work_dir / "dataset.yaml")),)))
    registry.register(TrainExecuteStep(action))
    registry.register(ModelUploadStep(action))
    context = kit.TrainContext(runtime_ctx=runtime, params=action.params.model_dump())
    return registry, context


def _prepared(context: Any, path: str) -> None:
    context.dataset = {"path": path, "config_path": path}


def train_action(kit: Kit) -> tuple[Any, Any]:
    return _train(kit, StubClient())


def train_action_upload_fails(kit: Kit) -> tuple[Any, Any]:
    return _train(kit, StubClient(fail=True))


SCENARIOS = {f.__name__: f for f in (success_flow, skip_fail_rollback, failed_result, utility_steps,
                                     validation_fails, train_action, train_action_upload_fails)}
