"""Train a digit classifier as a step workflow: load → train → evaluate → save.

Real data that ships with scikit-learn (8×8 digit images, no download). The train
step asks Ray for a GPU; ``ray.yaml`` turns that off for machines without one.

    python examples/train/action.py --config examples/train/ray.yaml    # on Ray
    python examples/train/action.py --config examples/train/local.yaml  # in-process
"""

from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from synapse_steps import BaseStep, BaseTrainAction, StepRegistry, StepResources, StepResult, TrainContext


class TrainParams(BaseModel):
    epochs: int = Field(15, ge=1, description="Passes over the training set.")
    test_size: float = Field(0.25, gt=0, lt=1, description="Fraction held out for evaluation.")
    seed: int = Field(0, description="Seed for the split and the model.")
    output_dir: str = Field("artifacts", description="Where the trained model is written.")
    min_accuracy: float = Field(0.8, ge=0, le=1, description="Fail (and roll back) below this test accuracy.")

    @field_validator("output_dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        """Resolved where params are validated (the driver), not in a worker's own cwd."""
        return str(Path(value).expanduser().resolve())


class LoadDigits(BaseStep[TrainContext]):
    name = "load"
    progress_weight = 0.1

    def execute(self, ctx: TrainContext) -> StepResult:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        x_train, x_test, y_train, y_test = train_test_split(
            digits.data / 16.0, digits.target, test_size=ctx.params["test_size"], random_state=ctx.params["seed"]
        )
        ctx.dataset = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
        return StepResult(data={"train": len(x_train), "test": len(x_test)})


class TrainModel(BaseStep[TrainContext]):
    """One ``partial_fit`` per epoch, reporting progress and loss as it goes."""

    name = "train"
    progress_weight = 0.7

    @property
    def resources(self) -> StepResources:
        return StepResources(num_gpus=1)

    def execute(self, ctx: TrainContext) -> StepResult:
        import numpy as np
        from sklearn.linear_model import SGDClassifier

        data = ctx.dataset
        classes = np.unique(data["y_train"])
        model = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=ctx.params["seed"])
        epochs = ctx.params["epochs"]
        for epoch in range(1, epochs + 1):
            model.partial_fit(data["x_train"], data["y_train"], classes=classes)
            ctx.set_metrics({"epoch": epoch, "train_accuracy": float(model.score(data["x_train"], data["y_train"]))})
            ctx.set_progress(epoch, epochs)
        ctx.model = model
        device = f"gpu:{os.environ.get('CUDA_VISIBLE_DEVICES')}" if os.environ.get("CUDA_VISIBLE_DEVICES") else "cpu"
        return StepResult(data={"epochs": epochs, "device": device})


class Evaluate(BaseStep[TrainContext]):
    name = "evaluate"
    progress_weight = 0.1

    def execute(self, ctx: TrainContext) -> StepResult:
        accuracy = float(ctx.model.score(ctx.dataset["x_test"], ctx.dataset["y_test"]))
        ctx.metrics["test_accuracy"] = accuracy
        ctx.set_metrics({"test_accuracy": accuracy})
        if accuracy < ctx.params["min_accuracy"]:
            return StepResult(success=False, error=f"test accuracy {accuracy:.3f} < min_accuracy")
        return StepResult(data={"test_accuracy": accuracy})


class SaveModel(BaseStep[TrainContext]):
    name = "save"
    progress_weight = 0.1

    def execute(self, ctx: TrainContext) -> StepResult:
        out = Path(ctx.params["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"digits-{ctx.runtime_ctx.job_id}.pkl"
        path.write_bytes(pickle.dumps(ctx.model))
        ctx.model_path = str(path)
        return StepResult(data={"path": str(path)}, rollback_data={"path": str(path)})

    def rollback(self, ctx: TrainContext, result: StepResult) -> None:
        Path(result.rollback_data["path"]).unlink(missing_ok=True)


class DigitsTrainAction(BaseTrainAction[TrainParams]):
    def setup_steps(self, registry: StepRegistry[TrainContext]) -> None:
        registry.register(LoadDigits())
        registry.register(TrainModel())
        registry.register(Evaluate())
        registry.register(SaveModel())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="executor config file (YAML/TOML/JSON); default: env vars only")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--output-dir", default="artifacts")
    args = parser.parse_args(argv)

    action = DigitsTrainAction({"epochs": args.epochs, "output_dir": args.output_dir}, config=args.config)
    summary = action.run(show_progress=True)  # a live bar in a terminal, timestamped lines elsewhere
    ctx = action.context
    assert ctx is not None
    print(summary)
    print(f"executor={action.config.executor} test_accuracy={ctx.metrics['test_accuracy']:.3f} model={ctx.model_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
