"""P1: Orchestrator + LocalExecutor over 10,000 no-op steps vs a bare loop doing the same calls."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measure, row  # noqa: E402

from synapse_steps import BaseStep, BaseStepContext, Orchestrator, RuntimeContext, StepRegistry, StepResult  # noqa: E402

STEPS = 10_000


class NoOp(BaseStep[BaseStepContext]):
    progress_weight = 1.0

    def __init__(self, i: int) -> None:
        self._name = f"noop-{i}"

    @property
    def name(self) -> str:
        return self._name

    def execute(self, ctx: BaseStepContext) -> StepResult:
        return StepResult()


def run() -> list[str]:
    registry: StepRegistry = StepRegistry()
    for i in range(STEPS):
        registry.register(NoOp(i))
    steps = registry.get_steps()

    def ours() -> None:
        Orchestrator(registry, BaseStepContext(runtime_ctx=RuntimeContext())).execute()

    def bare() -> None:
        ctx = BaseStepContext(runtime_ctx=RuntimeContext())
        for step in steps:
            if not step.can_skip(ctx):
                ctx.step_results.append(step.execute(ctx))

    t_ours, t_bare = measure(ours, repeats=7), measure(bare, repeats=7)
    ratio = t_ours.median_s / t_bare.median_s
    return [row(
        "P1", f"{t_ours.median_s / STEPS * 1e6:.1f} µs/step", f"{t_bare.median_s / STEPS * 1e6:.1f} µs/step", ratio,
        "≤ 5×", ratio <= 5, f"{STEPS:,} no-op steps in-process; run {t_ours} vs {t_bare}",
    )]


if __name__ == "__main__":
    print("\n".join(run()))
