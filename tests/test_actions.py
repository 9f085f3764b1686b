"""Specialized actions: validated pydantic params, setup_steps, run(), and the executor from config."""

from __future__ import annotations

import os

import pytest
from pydantic import BaseModel, Field, ValidationError

from synapse_steps import (
    BaseStep,
    BaseTrainAction,
    BaseUploadAction,
    ExecutorConfig,
    RuntimeContext,
    StepFailedError,
    StepRegistry,
    StepResult,
    TrainContext,
    UnknownStepError,
    UploadContext,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _no_executor_env(monkeypatch):
    """Tests choose the executor themselves; a developer's env must not leak in."""
    for name in list(os.environ):
        if name.startswith("SYNAPSE_STEPS_"):
            monkeypatch.delenv(name)


# --- a train action -----------------------------------------------------------------


class TrainParams(BaseModel):
    dataset: str
    epochs: int = Field(2, gt=0)
    learning_rate: float = 0.01


class LoadDataset(BaseStep[TrainContext]):
    name = "load_dataset"
    progress_weight = 0.2

    def execute(self, ctx: TrainContext) -> StepResult:
        ctx.dataset = [f"{ctx.params['dataset']}/{i}" for i in range(5)]
        ctx.metrics["pids"] = [os.getpid()]
        return StepResult(data={"size": len(ctx.dataset)})


class Train(BaseStep[TrainContext]):
    name = "train"
    progress_weight = 0.6

    def execute(self, ctx: TrainContext) -> StepResult:
        epochs = ctx.params["epochs"]
        for epoch in range(1, epochs + 1):
            ctx.set_progress(epoch, epochs)
        ctx.model = {"trained_on": len(ctx.dataset), "epochs": epochs, "lr": ctx.params["learning_rate"]}
        ctx.metrics["pids"].append(os.getpid())
        return StepResult()


class SaveModel(BaseStep[TrainContext]):
    name = "save_model"
    progress_weight = 0.2

    def execute(self, ctx: TrainContext) -> StepResult:
        ctx.model_path = f"/models/{ctx.params['dataset']}-e{ctx.params['epochs']}.pt"
        ctx.metrics["pids"].append(os.getpid())
        return StepResult(data={"path": ctx.model_path})


class MyTrain(BaseTrainAction[TrainParams]):
    def setup_steps(self, registry: StepRegistry[TrainContext]) -> None:
        registry.register(LoadDataset())
        registry.register(Train())
        registry.register(SaveModel())


def test_params_from_a_dict_are_validated_into_the_model():
    action = MyTrain({"dataset": "mnist", "epochs": "3"})
    assert isinstance(action.params, TrainParams)
    assert action.params == TrainParams(dataset="mnist", epochs=3, learning_rate=0.01)


def test_params_model_instance_is_kept():
    params = TrainParams(dataset="mnist")
    assert MyTrain(params).params is params


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"epochs": 3}, "dataset"),
        ({"dataset": "m", "epochs": 0}, "epochs"),
        ({"dataset": "m", "learning_rate": "x"}, "learning_rate"),
    ],
    ids=["missing", "out-of-range", "wrong-type"],
)
def test_bad_params_raise_a_validation_error_naming_the_field(params, field):
    with pytest.raises(ValidationError) as info:
        MyTrain(params)
    assert [e["loc"][0] for e in info.value.errors()] == [field]
    assert field in str(info.value)


def test_run_returns_the_summary_and_context_holds_the_final_state():
    action = MyTrain({"dataset": "cifar", "epochs": 4})
    assert action.context is None
    assert action.run() == {"success": True, "steps_executed": 3, "steps_total": 3}
    ctx = action.context
    assert isinstance(ctx, TrainContext)
    assert ctx.params == {"dataset": "cifar", "epochs": 4, "learning_rate": 0.01}
    assert ctx.dataset == [f"cifar/{i}" for i in range(5)]
    assert ctx.model == {"trained_on": 5, "epochs": 4, "lr": 0.01}
    assert ctx.model_path == "/models/cifar-e4.pt"
    assert ctx.metrics["pids"] == [os.getpid()] * 3


def test_run_uses_the_given_runtime_context_and_progress_callback():
    runtime = RuntimeContext(job_id="job-42")
    calls: list[tuple[int, int]] = []
    action = MyTrain({"dataset": "d", "epochs": 2}, runtime, progress_callback=lambda c, t: calls.append((c, t)))
    action.run()
    assert action.context.runtime_ctx is runtime
    assert runtime.progress["train"] == (2, 2)
    assert calls == [(20, 100), (50, 100), (80, 100), (100, 100)]


def test_each_run_builds_a_fresh_context():
    action = MyTrain({"dataset": "d"})
    action.run()
    first = action.context
    action.run()
    assert action.context is not first
    assert action.context.metrics["pids"] == [os.getpid()] * 3


def test_an_action_without_a_params_model_is_rejected():
    class NoModel(BaseTrainAction):  # type: ignore[type-arg]
        def setup_steps(self, registry):
            pass

    with pytest.raises(TypeError, match="NoModel"):
        NoModel({"a": 1})


def test_params_model_class_attribute_is_accepted():
    class ViaAttribute(BaseTrainAction):  # type: ignore[type-arg]
        params_model = TrainParams

        def setup_steps(self, registry):
            registry.register(LoadDataset())

    action = ViaAttribute({"dataset": "x"})
    assert isinstance(action.params, TrainParams)
    assert action.run()["steps_executed"] == 1


def test_a_config_override_for_an_unknown_step_fails_before_any_step_runs():
    action = MyTrain({"dataset": "d"}, config=ExecutorConfig(steps={"trian": {"num_cpus": 2}}))
    with pytest.raises(UnknownStepError, match="trian"):
        action.run()
    assert action.context is None or action.context.dataset is None


# --- an upload action, with rollback ----------------------------------------------


class UploadParams(BaseModel):
    files: list[str]
    fail_register: bool = False


REMOTE: set[str] = set()


class Collect(BaseStep[UploadContext]):
    name = "collect"
    progress_weight = 1

    def execute(self, ctx: UploadContext) -> StepResult:
        ctx.files = sorted(ctx.params["files"])
        return StepResult()


class Upload(BaseStep[UploadContext]):
    name = "upload"
    progress_weight = 3

    def execute(self, ctx: UploadContext) -> StepResult:
        for f in ctx.files:
            REMOTE.add(f)
            ctx.uploaded_files.append(f)
        return StepResult(rollback_data={"count": len(ctx.uploaded_files)})

    def rollback(self, ctx: UploadContext, result: StepResult) -> None:
        for f in ctx.uploaded_files[: result.rollback_data["count"]]:
            REMOTE.discard(f)
        ctx.uploaded_files = []


class Register(BaseStep[UploadContext]):
    name = "register"
    progress_weight = 1

    def execute(self, ctx: UploadContext) -> StepResult:
        if ctx.params["fail_register"]:
            return StepResult(success=False, error="catalog refused the files")
        return StepResult(data={"registered": list(ctx.uploaded_files)})


class MyUpload(BaseUploadAction[UploadParams]):
    def setup_steps(self, registry: StepRegistry[UploadContext]) -> None:
        registry.register(Collect())
        registry.register(Upload())
        registry.register(Register())


def test_upload_action_success():
    REMOTE.clear()
    action = MyUpload({"files": ["b.txt", "a.txt"]})
    assert action.run() == {"success": True, "steps_executed": 3, "steps_total": 3}
    assert isinstance(action.context, UploadContext)
    assert action.context.uploaded_files == ["a.txt", "b.txt"]
    assert {"a.txt", "b.txt"} == REMOTE


def test_upload_action_failure_rolls_back_and_context_stays_readable():
    REMOTE.clear()
    action = MyUpload({"files": ["a.txt", "b.txt"], "fail_register": True})
    with pytest.raises(StepFailedError, match="catalog refused the files") as info:
        action.run()
    assert info.value.step_name == "register"
    assert set() == REMOTE
    assert action.context.files == ["a.txt", "b.txt"]
    assert action.context.uploaded_files == []


def test_upload_params_are_validated():
    with pytest.raises(ValidationError, match="files"):
        MyUpload({"files": "not-a-list"})


# --- switching executors by configuration --------------------------------------------


@pytest.mark.slow
def test_executor_env_var_moves_the_same_action_onto_ray(monkeypatch, ray_session):
    monkeypatch.setenv("SYNAPSE_STEPS_EXECUTOR", "ray")
    monkeypatch.setenv("SYNAPSE_STEPS_RAY__PROGRESS_INTERVAL_S", "0.05")
    action = MyTrain({"dataset": "imagenet", "epochs": 2})
    assert action.config.executor == "ray"
    assert action.run() == {"success": True, "steps_executed": 3, "steps_total": 3}
    ctx = action.context
    assert ctx.model == {"trained_on": 5, "epochs": 2, "lr": 0.01}
    assert ctx.model_path == "/models/imagenet-e2.pt"
    assert len(ctx.metrics["pids"]) == 3
    assert os.getpid() not in ctx.metrics["pids"]


def test_explicit_config_runs_an_upload_action_on_ray_with_rollback(ray_session):
    REMOTE.clear()
    config = ExecutorConfig(executor="ray", ray={"progress_interval_s": 0.05})
    action = MyUpload({"files": ["a.txt"], "fail_register": True}, config=config)
    with pytest.raises(StepFailedError, match="catalog refused"):
        action.run()
    # The upload ran in a Ray worker, so this process's REMOTE never changed; the
    # context, though, is the committed state after the rollback.
    assert action.context.files == ["a.txt"]
    assert action.context.uploaded_files == []
