"""P5: one step fanning 64 CPU-bound shards (~50 ms each) out over Ray vs bare Ray tasks,
and vs the same step on the in-process executor (threads)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import calibrate, main_on_local_ray, measure, row, spin  # noqa: E402

from ray_backend import RayExecutor  # noqa: E402
from synapse_steps import (  # noqa: E402
    BaseStep,
    BaseStepContext,
    ExecutorConfig,
    LocalExecutor,
    Orchestrator,
    RuntimeContext,
    StepExecutor,
    StepRegistry,
    StepResult,
)

SHARDS = 64
WORK_S = 0.05


ITERATIONS = calibrate(WORK_S)


def burn(shard: int, iterations: int = ITERATIONS) -> int:
    spin(iterations)
    return shard


@dataclass
class FanContext(BaseStepContext):
    results: list[int] = field(default_factory=list)


class FanOut(BaseStep[FanContext]):
    name = "fan-out"
    progress_weight = 1.0

    def execute(self, ctx: FanContext) -> StepResult:
        ctx.results = ctx.map(burn, range(SHARDS), num_cpus=1)
        return StepResult()


@ray.remote(num_cpus=1)
def burn_task(shard: int) -> int:
    return burn(shard)


def run() -> list[str]:
    config = ExecutorConfig(executor="ray", defaults={"num_cpus": 0})  # the fanning step holds no CPU

    def ours(executor: StepExecutor) -> None:
        registry: StepRegistry = StepRegistry()
        registry.register(FanOut())
        ctx = FanContext(runtime_ctx=RuntimeContext())
        Orchestrator(registry, ctx, executor=executor).execute()
        assert ctx.results == list(range(SHARDS))

    def bare() -> None:
        assert ray.get([burn_task.remote(s) for s in range(SHARDS)]) == list(range(SHARDS))

    t_bare = measure(bare, repeats=3)
    t_ray = measure(lambda: ours(RayExecutor(config)), repeats=3)
    t_local = measure(lambda: ours(LocalExecutor()), repeats=1, warmup=0)
    throughput = t_bare.median_s / t_ray.median_s
    cpus = int(ray.cluster_resources().get("CPU", 0))
    return [
        row("P5", f"{SHARDS / t_ray.median_s:.1f} shards/s", f"{SHARDS / t_bare.median_s:.1f} shards/s", throughput,
            "≥ 0.9× throughput", throughput >= 0.9,
            f"{SHARDS} × {WORK_S * 1e3:.0f} ms shards on {cpus} CPUs; whole run incl. fixed per-run cost"),
        row("P5 vs local", f"{t_ray.median_s:.2f} s", f"{t_local.median_s:.2f} s", t_local.median_s / t_ray.median_s,
            "speedup (report)", True, "same step on the in-process executor (threads; CPU-bound Python holds the GIL)"),
    ]


if __name__ == "__main__":
    main_on_local_ray(run)
