"""P5: one step fanning 64 CPU-bound shards (~50 ms each) out over Ray vs bare Ray tasks,
and vs the same step on the in-process executor (threads)."""

from __future__ import annotations

import statistics
import sys
import time
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
    map_s: float = 0.0


class FanOut(BaseStep[FanContext]):
    name = "fan-out"
    progress_weight = 1.0

    def execute(self, ctx: FanContext) -> StepResult:
        start = time.perf_counter()
        ctx.results = ctx.map(burn, range(SHARDS), num_cpus=1)
        ctx.map_s = time.perf_counter() - start
        return StepResult()


@ray.remote(num_cpus=1)
def burn_task(shard: int) -> int:
    return burn(shard)


def run() -> list[str]:
    config = ExecutorConfig(executor="ray", defaults={"num_cpus": 0})  # the fanning step holds no CPU

    map_times: list[float] = []

    def ours(executor: StepExecutor) -> None:
        registry: StepRegistry = StepRegistry()
        registry.register(FanOut())
        ctx = FanContext(runtime_ctx=RuntimeContext())
        Orchestrator(registry, ctx, executor=executor).execute()
        assert ctx.results == list(range(SHARDS))
        map_times.append(ctx.map_s)

    def bare() -> None:
        assert ray.get([burn_task.remote(s) for s in range(SHARDS)]) == list(range(SHARDS))

    t_bare = measure(bare, repeats=3)
    t_ray = measure(lambda: ours(RayExecutor(config)), repeats=3)
    in_step = statistics.median(map_times)
    t_local = measure(lambda: ours(LocalExecutor()), repeats=1, warmup=0)
    throughput = t_bare.median_s / t_ray.median_s
    cpus = int(ray.cluster_resources().get("CPU", 0))
    map_throughput = t_bare.median_s / in_step
    return [
        row("P5", f"{SHARDS / in_step:.1f} shards/s", f"{SHARDS / t_bare.median_s:.1f} shards/s", map_throughput,
            "≥ 0.95× throughput", map_throughput >= 0.95,
            f"{SHARDS} × {WORK_S * 1e3:.0f} ms shards on {cpus} CPUs; the map inside the step"),
        row("P5 run", f"{SHARDS / t_ray.median_s:.1f} shards/s", f"{SHARDS / t_bare.median_s:.1f} shards/s", throughput,
            "report", True, "whole run, incl. the fixed per-run cost (preflight, step task)"),
        row("P5 vs local", f"{t_ray.median_s:.2f} s", f"{t_local.median_s:.2f} s", t_local.median_s / t_ray.median_s,
            "speedup (report)", True, "same step on the in-process executor (threads; CPU-bound Python holds the GIL)"),
    ]


if __name__ == "__main__":
    main_on_local_ray(run)
