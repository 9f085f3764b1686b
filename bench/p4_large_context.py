"""P4: a context holding a 100 MB array that only the first step writes.

Compared with the bare minimum (one ``ray.put`` of the array and one task reading
it), and — the design property — the marginal cost of one more step with the array
in the context against the same without it: it must not grow with the array's size.
"""

from __future__ import annotations

import statistics
import sys
import time
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
    step_starts: list[float] = []

    def ours(steps: int, elements: int) -> None:
        registry: StepRegistry = StepRegistry()
        registry.register(WriteWeights(elements))
        for i in range(steps - 1):
            registry.register(ReadWeights(i))
        ctx = ArrayContext(runtime_ctx=RuntimeContext())
        step_starts.clear()
        Orchestrator(registry, ctx, before_step=lambda name, c: step_starts.append(time.perf_counter()),
                     executor=RayExecutor(config)).execute()
        assert ctx.checksum == 1.0 or steps == 1

    def median_step(elements: int) -> float:
        """Median time of a reading step (after the first, writing one) in a 50-step run."""
        medians = []
        for _ in range(3):
            ours(50, elements)
            medians.append(statistics.median(b - a for a, b in zip(step_starts[1:], step_starts[2:])))
        return statistics.median(medians)

    def bare_once() -> None:
        ray.get(read_task.remote(ray.put(np.ones(ELEMENTS))))

    def bare_ten() -> None:
        ref = ray.put(np.ones(ELEMENTS))
        for _ in range(10):
            ray.get(read_task.remote(ref))

    once, ten = measure(bare_once, repeats=5), measure(bare_ten, repeats=5)
    runs = {n: measure(lambda n=n: ours(n, ELEMENTS), repeats=5) for n in (1, 10, 50)}
    big, small = median_step(ELEMENTS), median_step(128)
    ms = {n: f"{t.median_s * 1e3:.0f}" for n, t in runs.items()}
    return [
        row("P4", f"{runs[10].median_s * 1e3:.0f} ms", f"{once.median_s * 1e3:.0f} ms", runs[10].median_s / once.median_s,
            "≤ 1.2×", runs[10].median_s / once.median_s <= 1.2,
            f"10 steps vs one put + one task; runs of 1/10/50 steps: {ms[1]}/{ms[10]}/{ms[50]} ms"),
        row("P4 vs 10 tasks", f"{runs[10].median_s * 1e3:.0f} ms", f"{ten.median_s * 1e3:.0f} ms",
            runs[10].median_s / ten.median_s, "≤ 1.5×", runs[10].median_s / ten.median_s <= 1.5,
            "same 10 steps vs one put + 10 bare tasks reading it"),
        row("P4 flat", f"{big * 1e3:.2f} ms/step", f"{small * 1e3:.2f} ms/step", big / small, "≈ 1× (flat)",
            big / small <= 1.2, "median reading step with a 100 MiB array in the context vs 1 KiB (50-step runs)"),
    ]


if __name__ == "__main__":
    main_on_local_ray(run)
