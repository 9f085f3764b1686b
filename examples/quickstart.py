"""The seed's quick start, runnable: only the import lines differ from synapse-sdk.

Run: python examples/quickstart.py
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synapse_steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    RuntimeContext,
    StepRegistry,
    StepResult,
)


def load_data() -> list[int]:
    return list(range(10))


def process(item: int) -> int:
    return item * item


# 1. Define context for state sharing
@dataclass
class ProcessContext(BaseStepContext):
    data: list = field(default_factory=list)
    processed: int = 0


# 2. Define steps
class LoadStep(BaseStep[ProcessContext]):
    @property
    def name(self) -> str:
        return "load"

    @property
    def progress_weight(self) -> float:
        return 0.3

    def execute(self, ctx: ProcessContext) -> StepResult:
        ctx.data = load_data()
        return StepResult(success=True, data={"count": len(ctx.data)})


class ProcessStep(BaseStep[ProcessContext]):
    @property
    def name(self) -> str:
        return "process"

    @property
    def progress_weight(self) -> float:
        return 0.7

    def execute(self, ctx: ProcessContext) -> StepResult:
        for item in ctx.data:
            process(item)
            ctx.processed += 1
            ctx.set_progress(ctx.processed, len(ctx.data))
        return StepResult(success=True)


def main() -> dict:
    # 3. Register and run
    registry = StepRegistry[ProcessContext]()
    registry.register(LoadStep())
    registry.register(ProcessStep())

    runtime_ctx = RuntimeContext()
    context = ProcessContext(runtime_ctx=runtime_ctx)
    orchestrator = Orchestrator(registry, context)
    result = orchestrator.execute()
    print(result, f"processed={context.processed}")
    return result


if __name__ == "__main__":
    main()
