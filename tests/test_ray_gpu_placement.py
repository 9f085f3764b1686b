"""GPU placement and fan-out on a multi-node cluster with logical GPUs (no real GPU needed)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from ray_backend import RayExecutor
from synapse_steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    RuntimeContext,
    StepFailedError,
    StepOptions,
    StepResources,
    StepResult,
)
from tests.conftest import multi_node_cluster, ray_config
from tests.steps_kit import registry_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gpu_cluster() -> Iterator[Cluster]:
    """CPU-only head, one CPU worker, two workers with one logical GPU each."""
    gpu_worker = {"num_cpus": 1, "num_gpus": 1}
    yield from multi_node_cluster({"num_cpus": 1, "num_gpus": 0}, [{"num_cpus": 2, "num_gpus": 0}, gpu_worker, gpu_worker])


def _gpu_nodes() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU", 0) > 0}


def where() -> dict[str, Any]:
    return {
        "node": ray.get_runtime_context().get_node_id(),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


@dataclass
class GpuContext(BaseStepContext):
    placements: dict[str, Any] = field(default_factory=dict)
    shards: list[Any] = field(default_factory=list)
    rollbacks: list[str] = field(default_factory=list)


class PlacedStep(BaseStep[GpuContext]):
    progress_weight = 1.0

    def __init__(self, name: str, num_gpus: float = 0.0) -> None:
        self._name, self._gpus = name, num_gpus

    @property
    def name(self) -> str:
        return self._name

    @property
    def resources(self) -> StepResources:
        return StepResources(num_cpus=0.5, num_gpus=self._gpus)

    def execute(self, ctx: GpuContext) -> StepResult:
        ctx.placements[self._name] = where()
        return StepResult()

    def rollback(self, ctx: GpuContext, result: StepResult) -> None:
        ctx.rollbacks.append(self._name)


def _gpu_shard(i: int) -> dict[str, Any]:
    time.sleep(0.5)
    return {"i": i, **where()}


class GpuFanOut(PlacedStep):
    def __init__(self, name: str, shards: int, **options: Any) -> None:
        super().__init__(name, 0.0)
        self._shards, self._options = shards, options

    def execute(self, ctx: GpuContext) -> StepResult:
        ctx.shards = ctx.map(_gpu_shard, range(self._shards), num_cpus=0, **self._options)
        return StepResult()


def test_gpu_steps_land_on_gpu_nodes_and_see_their_gpu(gpu_cluster: Cluster) -> None:
    ctx = GpuContext(runtime_ctx=RuntimeContext())
    registry = registry_of(PlacedStep("prepare"), PlacedStep("train", num_gpus=1), PlacedStep("upload"))
    Orchestrator(registry, ctx, executor=RayExecutor(ray_config())).execute()
    gpu_nodes = _gpu_nodes()
    train = ctx.placements["train"]
    assert train["node"] in gpu_nodes
    assert len(train["gpu_ids"]) == 1 and train["cuda_visible"] == train["gpu_ids"][0]
    for cpu_step in ("prepare", "upload"):
        assert ctx.placements[cpu_step]["node"] not in gpu_nodes
        assert ctx.placements[cpu_step]["gpu_ids"] == []


def test_config_turns_the_gpu_off_by_step_name(gpu_cluster: Cluster) -> None:
    ctx = GpuContext(runtime_ctx=RuntimeContext())
    config = ray_config()
    config.steps["train"] = StepOptions(num_gpus=0)
    Orchestrator(registry_of(PlacedStep("train", num_gpus=1)), ctx, executor=RayExecutor(config)).execute()
    assert ctx.placements["train"]["gpu_ids"] == []
    assert ctx.placements["train"]["node"] not in _gpu_nodes()


def test_fan_out_over_gpus_uses_every_gpu_node(gpu_cluster: Cluster) -> None:
    ctx = GpuContext(runtime_ctx=RuntimeContext())
    Orchestrator(registry_of(GpuFanOut("fan", 6, num_gpus=1)), ctx, executor=RayExecutor(ray_config())).execute()
    assert [s["i"] for s in ctx.shards] == list(range(6))
    assert {s["node"] for s in ctx.shards} == _gpu_nodes()
    assert all(len(s["gpu_ids"]) == 1 for s in ctx.shards)


def test_a_step_asking_for_more_gpus_than_any_node_has_fails_fast(gpu_cluster: Cluster) -> None:
    ctx = GpuContext(runtime_ctx=RuntimeContext())
    registry = registry_of(PlacedStep("prepare"), PlacedStep("train", num_gpus=2))
    start = time.monotonic()
    with pytest.raises(StepFailedError, match=r"'train'.*could not start within 2s.*num_gpus=2") as info:
        Orchestrator(registry, ctx, executor=RayExecutor(ray_config(schedule_timeout_s=2))).execute()
    assert time.monotonic() - start < 2 + 5
    # 'train' never started on any worker: nothing to undo, so only 'prepare' is rolled back.
    assert ctx.rollbacks == ["prepare"] and info.value.rollback_errors == []
    assert "schedule_timeout_s" in str(info.value)


def test_losing_a_node_mid_fan_out_fails_the_step_and_rolls_back(gpu_cluster: Cluster) -> None:
    doomed = gpu_cluster.add_node(num_cpus=2, resources={"doomed": 2})
    gpu_cluster.wait_for_nodes()

    def slow_shard(i: int) -> int:
        time.sleep(30)
        return i

    class DoomedFan(GpuFanOut):
        def execute(self, ctx: GpuContext) -> StepResult:
            ctx.shards = ctx.map(slow_shard, range(4), num_cpus=0.5, resources={"doomed": 0.5})
            return StepResult()

    killer = threading.Timer(3.0, gpu_cluster.remove_node, args=(doomed,))
    killer.start()
    ctx = GpuContext(runtime_ctx=RuntimeContext())
    start = time.monotonic()
    try:
        with pytest.raises(StepFailedError, match=r"shard \d of 4 failed"):
            Orchestrator(registry_of(PlacedStep("prepare"), DoomedFan("fan", 4)), ctx,
                         executor=RayExecutor(ray_config())).execute()
    finally:
        killer.join()
    assert time.monotonic() - start < 25
    assert ctx.rollbacks == ["fan", "prepare"]
