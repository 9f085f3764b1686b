"""GPU check: run the train example's GPU step and a fan-out over every GPU, print where.

On a machine without a GPU it says so and exits 0. Needs the `examples` extra; uses
PyTorch for a real CUDA computation in each shard when it is installed.

    python bench/gpu_check.py
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "train"))

from action import DigitsTrainAction  # noqa: E402

from synapse_steps import (  # noqa: E402
    BaseStep,
    BaseStepContext,
    ExecutorConfig,
    Orchestrator,
    RaySettings,
    RuntimeContext,
    StepRegistry,
    StepResult,
)


def gpu_shard(index: int) -> dict[str, Any]:
    """Runs on one GPU: reports what Ray assigned and, with torch, does real CUDA work."""
    info: dict[str, Any] = {
        "shard": index,
        "node": ray.get_runtime_context().get_node_id()[:12],
        "gpu_ids": ray.get_gpu_ids(),
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    try:
        import torch
    except ImportError:
        info["work"] = "torch not installed: placement only"
        return info
    start = time.perf_counter()
    a = torch.randn(4096, 4096, device="cuda")
    checksum = float((a @ a).sum().item())
    torch.cuda.synchronize()
    info["work"] = f"{torch.cuda.get_device_name(0)}: 4096² matmul in {time.perf_counter() - start:.3f}s ({checksum:.3g})"
    return info


@dataclass
class FanContext(BaseStepContext):
    shards: list[dict[str, Any]] = field(default_factory=list)


class FanOverGpus(BaseStep[FanContext]):
    name = "fan-out"
    progress_weight = 1.0

    def __init__(self, gpus: int) -> None:
        self.gpus = gpus

    def execute(self, ctx: FanContext) -> StepResult:
        ctx.shards = ctx.map(gpu_shard, range(2 * self.gpus), num_cpus=0, num_gpus=1)
        return StepResult()


def main() -> int:
    ray.init(address="local", include_dashboard=False, logging_level="ERROR")
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus == 0:
            print("No GPU on this machine (Ray sees GPU=0): nothing to check.")
            return 0
        print(f"Ray sees {gpus} GPU(s).")
        config = ExecutorConfig(executor="ray", ray=RaySettings(schedule_timeout_s=60))
        action = DigitsTrainAction({"epochs": 5, "output_dir": "/tmp/synapse-steps-gpu-check"}, config=config)
        action.run()
        assert action.context is not None
        train = next(r for r in action.context.step_results if r.data.get("device"))
        print(f"train step: device={train.data['device']} accuracy={action.context.metrics['test_accuracy']:.3f}")

        registry: StepRegistry = StepRegistry()
        registry.register(FanOverGpus(gpus))
        ctx = FanContext(runtime_ctx=RuntimeContext())
        Orchestrator(registry, ctx, executor=_executor(config)).execute()
        for shard in ctx.shards:
            print(f"shard {shard['shard']}: node {shard['node']} gpu_ids={shard['gpu_ids']} "
                  f"CUDA_VISIBLE_DEVICES={shard['CUDA_VISIBLE_DEVICES']} {shard['work']}")
        return 0
    finally:
        ray.shutdown()


def _executor(config: ExecutorConfig) -> Any:
    from ray_backend import RayExecutor

    return RayExecutor(config)


if __name__ == "__main__":
    raise SystemExit(main())
