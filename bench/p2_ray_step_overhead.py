"""P2: per-step cost of RayOrchestrator vs a bare ray.get(task.remote(ctx)), same context."""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import main_on_local_ray, row  # noqa: E402
from p1_local_overhead import NoOp  # noqa: E402

from ray_backend import RayExecutor  # noqa: E402
from synapse_steps import (  # noqa: E402
    BaseStepContext,
    ExecutorConfig,
    Orchestrator,
    RuntimeContext,
    StepRegistry,
)

STEPS = 100
RUN_STEPS = 50
REPEATS = 5


@dataclass
class SmallContext(BaseStepContext):
    values: dict = field(default_factory=lambda: {f"k{i}": i for i in range(20)})


@ray.remote
def bare_step(ctx: SmallContext) -> SmallContext:
    return ctx


def _registry(count: int) -> StepRegistry:
    registry: StepRegistry = StepRegistry()
    for i in range(count):
        registry.register(NoOp(i))
    return registry


def run() -> list[str]:
    """Per step: the median time between consecutive step starts inside a 100-step run,
    against the median of 100 bare task round trips. The whole run is reported apart:
    it adds a fixed per-run cost (preflight, the run's state in the context actor). The first
    run of the process also starts the context actor, which later runs share: reported apart."""
    config = ExecutorConfig(executor="ray")
    step_starts: list[float] = []
    run_times: list[float] = []

    def ours() -> None:
        ctx = SmallContext(runtime_ctx=RuntimeContext())
        start = time.perf_counter()
        Orchestrator(_registry(STEPS), ctx, before_step=lambda name, c: step_starts.append(time.perf_counter()),
                     executor=RayExecutor(config)).execute()
        run_times.append(time.perf_counter() - start)

    bare_times: list[float] = []
    run50: list[float] = []
    bare50: list[float] = []

    def whole_runs() -> None:
        """The issue's P2: a whole 50-step run (fixed costs included) vs 50 bare round trips."""
        ctx = SmallContext(runtime_ctx=RuntimeContext())
        start = time.perf_counter()
        Orchestrator(_registry(RUN_STEPS), ctx, executor=RayExecutor(config)).execute()
        run50.append(time.perf_counter() - start)
        bare_ctx = SmallContext(runtime_ctx=None)  # type: ignore[arg-type]
        start = time.perf_counter()
        for _ in range(RUN_STEPS):
            bare_ctx = ray.get(bare_step.remote(bare_ctx))
        bare50.append(time.perf_counter() - start)

    def bare() -> None:
        ctx = SmallContext(runtime_ctx=None)  # type: ignore[arg-type]
        for _ in range(STEPS):
            start = time.perf_counter()
            ctx = ray.get(bare_step.remote(ctx))
            bare_times.append(time.perf_counter() - start)

    for _ in range(REPEATS):
        step_starts.clear()
        ours()
        bare()
    for _ in range(REPEATS):
        whole_runs()
    whole50 = statistics.median(run50) / statistics.median(bare50)
    intervals = [b - a for a, b in zip(step_starts, step_starts[1:])]
    per_step, per_bare = statistics.median(intervals), statistics.median(bare_times)
    whole_ours = statistics.median(run_times)
    ratio = per_step / per_bare
    return [
        row("P2", f"{per_step * 1e3:.2f} ms/step", f"{per_bare * 1e3:.2f} ms/step", ratio, "≤ 1.5×", ratio <= 1.5,
            f"median per step in a {STEPS}-step run vs bare round trip; small dataclass context"),
        row("P2 run", f"{whole_ours * 1e3:.0f} ms", f"{per_bare * STEPS * 1e3:.0f} ms", whole_ours / (per_bare * STEPS),
            "report", True, f"whole run incl. fixed cost {(whole_ours - per_step * STEPS) * 1e3:.0f} ms "
            f"(preflight; the first run, which starts the driver's context actor: {run_times[0] * 1e3:.0f} ms)"),
        row("P2 50-step run", f"{statistics.median(run50) * 1e3:.0f} ms", f"{statistics.median(bare50) * 1e3:.0f} ms",
            whole50, "≤ 1.2×", whole50 <= 1.2, f"whole {RUN_STEPS}-step run vs {RUN_STEPS} bare round trips, "
            f"interleaved; runs {min(run50) * 1e3:.0f}–{max(run50) * 1e3:.0f} ms"),
    ]


if __name__ == "__main__":
    main_on_local_ray(run)
