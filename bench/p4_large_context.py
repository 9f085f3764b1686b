"""P4: a context holding a 100 MB array that only the first step writes.

Compared with the bare minimum (one ``ray.put`` of the array and one task reading
it), and — the design property — the marginal cost of one more step with the array
in the context against the same without it: it must not grow with the array's size.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import main_on_local_ray, measure, row  # noqa: E402

from ray_backend import RayExecutor  # noqa: E402
from synapse_steps import (  # noqa: E402
    BaseStep,
    BaseStepContext,
    ExecutorConfig,
    Orchestrator,
    RuntimeContext,
    StepRegistry,
    StepResult,
)

ELEMENTS = 100 * 2**20 // 8  # 100 MiB of float64


@dataclass
class ArrayContext(BaseStepContext):
    weights: Any = None
    checksum: float = 0.0


class WriteWeights(BaseStep[ArrayContext]):
    name = "write"
    progress_weight = 1.0

    def __init__(self, elements: int) -> None:
        self.elements = elements

    def execute(self, ctx: ArrayContext) -> StepResult:
        ctx.weights = np.ones(self.elements)
        return StepResult()


class ReadWeights(BaseStep[ArrayContext]):
    progress_weight = 1.0

    def __init__(self, i: int) -> None:
        self._name = f"read-{i}"

    @property
    def name(self) -> str:
        return self._name

    def execute(self, ctx: ArrayContext) -> StepResult:
        ctx.checksum = float(ctx.weights[-1])
        return StepResult()


@ray.remote
def read_task(array: np.ndarray) -> float:
    return float(array[-1])


def run() -> list[str]:
    config = ExecutorConfig(executor="ray")

    def ours(steps: int, elements: int) -> None:
        registry: StepRegistry = StepRegistry()
        registry.register(WriteWeights(elements))
        for i in range(steps - 1):
            registry.register(ReadWeights(i))
        ctx = ArrayContext(runtime_ctx=RuntimeContext())
        Orchestrator(registry, ctx, executor=RayExecutor(config)).execute()
        assert ctx.checksum == 1.0 or steps == 1

    def bare() -> None:
        ray.get(read_task.remote(ray.put(np.ones(ELEMENTS))))

    baseline = measure(bare, repeats=5)
    big = {n: measure(lambda n=n: ours(n, ELEMENTS), repeats=3) for n in (1, 10, 50)}
    small = {n: measure(lambda n=n: ours(n, 128), repeats=3) for n in (10, 50)}
    per_step_big = (big[50].median_s - big[10].median_s) / 40
    per_step_small = (small[50].median_s - small[10].median_s) / 40
    literal = big[10].median_s / baseline.median_s
    flat = per_step_big / per_step_small
    return [
        row("P4", f"{big[10].median_s * 1e3:.0f} ms", f"{baseline.median_s * 1e3:.0f} ms", literal, "≤ 1.2×",
            literal <= 1.2, f"10 steps vs put+1 task; runs of 1/10/50 steps: {big[1].median_s * 1e3:.0f}/"
            f"{big[10].median_s * 1e3:.0f}/{big[50].median_s * 1e3:.0f} ms (fixed per-run cost included)"),
        row("P4 flat", f"{per_step_big * 1e3:.2f} ms/step", f"{per_step_small * 1e3:.2f} ms/step", flat,
            "≈ 1× (flat)", flat <= 1.2, "marginal step with 100 MiB array in the context vs 1 KiB"),
    ]


if __name__ == "__main__":
    main_on_local_ray(run)
