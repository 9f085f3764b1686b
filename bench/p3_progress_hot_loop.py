"""P3: ctx.set_progress once per item in a hot loop on a worker vs the same loop without it."""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import calibrate, main_on_local_ray, row, spin  # noqa: E402

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

ITEMS = 100_000
WORK_S = 20e-6


ITERATIONS = calibrate(WORK_S)


def work() -> None:
    spin(ITERATIONS)


@dataclass
class LoopContext(BaseStepContext):
    loop_s: float = 0.0


class HotLoop(BaseStep[LoopContext]):
    name = "hot-loop"
    progress_weight = 1.0

    def __init__(self, report: bool) -> None:
        self.report = report

    def execute(self, ctx: LoopContext) -> StepResult:
        start = time.perf_counter()
        if self.report:
            for i in range(ITEMS):
                work()
                ctx.set_progress(i + 1, ITEMS)
        else:
            for _ in range(ITEMS):
                work()
        ctx.loop_s = time.perf_counter() - start
        return StepResult()


def run_loop(report: bool, seen: list[int]) -> float:
    registry: StepRegistry = StepRegistry()
    registry.register(HotLoop(report))
    ctx = LoopContext(runtime_ctx=RuntimeContext())
    Orchestrator(registry, ctx, lambda current, total: seen.append(current),
                 executor=RayExecutor(ExecutorConfig(executor="ray"))).execute()
    return ctx.loop_s


def run(repeats: int = 5) -> list[str]:
    with_calls, without, updates = [], [], []
    for _ in range(repeats):
        seen: list[int] = []
        with_calls.append(run_loop(True, seen))
        updates.append(seen)
        without.append(run_loop(False, []))
    ratio = statistics.median(with_calls) / statistics.median(without)
    intermediate = min(len([v for v in seen if 0 < v < 100]) for seen in updates)
    final = all(seen and seen[-1] == 100 for seen in updates)
    met = ratio <= 1.05 and intermediate >= 10 and final
    return [row(
        "P3", f"{statistics.median(with_calls):.3f} s", f"{statistics.median(without):.3f} s", ratio,
        "≤ 1.05×, ≥ 10 updates + final", met,
        f"{ITEMS:,} items × {WORK_S * 1e6:.0f} µs in the worker; driver saw ≥ {intermediate} intermediate "
        f"updates, final 100 %: {final}",
    )]


if __name__ == "__main__":
    main_on_local_ray(run)
