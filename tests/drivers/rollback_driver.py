"""A driver process for the rollback tests: runs one scenario, receives real signals.

    python rollback_driver.py MARKERS EXECUTOR SCENARIO

EXECUTOR is ``local`` or ``ray`` (an embedded local Ray). Steps write marker files
into MARKERS as they go (``unit-<step>-<i>``, ``rollback-start-<step>``, …) so the
test knows the moment to strike; the rollback of ``work`` writes what it saw (the
units in its context) and deletes exactly those unit files. At the end one line
``OUTCOME {json}`` tells what the run raised and what its records say.

Scenarios:
- ``in-step``: ``work`` does units forever (0.05 s each); the test signals mid-step.
- ``in-hook``: the ``before_step`` hook of the second step waits; the test signals there.
- ``in-rollback``: ``work`` fails after 3 units; ``first``'s rollback takes 2 s; the test
  signals during the rollbacks.
- ``stubborn``: ``work`` swallows the cancel (and every interrupt) in a loop.
- ``hang-rollback``: like ``in-rollback``, but ``first``'s rollback never returns (the
  test's third signal abandons it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from synapse_steps import (
    BaseStep,
    BaseStepContext,
    ExecutorConfig,
    Orchestrator,
    RaySettings,
    RollbackIncompleteError,
    RuntimeContext,
    StepFailedError,
    StepRegistry,
    StepResult,
)

MARKERS, EXECUTOR, SCENARIO = sys.argv[1], sys.argv[2], sys.argv[3]


def mark(name: str, text: str = "") -> None:
    with open(os.path.join(MARKERS, name), "w") as f:
        f.write(text or f"{os.getpid()} {time.time():.6f}")


@dataclass
class Ctx(BaseStepContext):
    done: list[int] = field(default_factory=list)


class First(BaseStep[Ctx]):
    name = "first"
    progress_weight = 1.0

    def execute(self, ctx: Ctx) -> StepResult:
        mark("executed-first")
        return StepResult()

    def rollback(self, ctx: Ctx, result: StepResult) -> None:
        mark("rollback-start-first")
        if SCENARIO == "in-rollback":
            for _ in range(40):
                time.sleep(0.05)
        if SCENARIO == "hang-rollback":
            while True:
                time.sleep(0.05)
        mark("rollback-end-first")


class Work(BaseStep[Ctx]):
    name = "work"
    progress_weight = 1.0

    def execute(self, ctx: Ctx) -> StepResult:
        mark("started-work")
        i = 0
        while True:
            try:
                i += 1
                ctx.done.append(i)
                mark(f"unit-work-{i}")
                ctx.set_progress(i % 100, 100)
                if SCENARIO in ("in-rollback", "hang-rollback") and i == 3:
                    raise RuntimeError("work broke after 3 units")
                time.sleep(0.05)
            except BaseException:
                if SCENARIO != "stubborn":
                    raise
                mark("swallowed")

    def rollback(self, ctx: Ctx, result: StepResult) -> None:
        mark("rollback-start-work")
        for i in ctx.done:
            path = os.path.join(MARKERS, f"unit-work-{i}")
            if os.path.exists(path):
                os.remove(path)
        mark("rollback-saw-work", json.dumps(ctx.done))


class Never(BaseStep[Ctx]):
    name = "never"
    progress_weight = 1.0

    def execute(self, ctx: Ctx) -> StepResult:
        mark("executed-never")
        return StepResult()


def before_step(name: str, ctx: Any) -> None:
    if SCENARIO == "in-hook" and name == "work":
        mark("in-hook")
        for _ in range(600):
            time.sleep(0.05)


def main() -> None:
    registry: StepRegistry[Ctx] = StepRegistry()
    for step in (First(), Work(), Never()):
        registry.register(step)
    ctx = Ctx(runtime_ctx=RuntimeContext())
    config = ExecutorConfig(executor=EXECUTOR, ray=RaySettings(num_cpus=2, progress_interval_s=0.05))
    orchestrator = Orchestrator.from_config(registry, ctx, config, before_step=before_step)
    outcome: dict[str, Any] = {}
    try:
        orchestrator.execute()
        outcome["raised"] = None
    except (StepFailedError, RollbackIncompleteError, KeyboardInterrupt) as exc:
        outcome["raised"] = type(exc).__name__
        outcome["message"] = str(exc)
        if isinstance(exc, RollbackIncompleteError):
            outcome["not_run"], outcome["abandoned"] = exc.not_run, exc.abandoned
    outcome["records"] = [[r.name, r.status, r.rollback] for r in orchestrator.records]
    outcome["rollback_errors"] = [repr(r.rollback_error) for r in orchestrator.records if r.rollback_error]
    outcome["errors"] = [r.error for r in ctx.step_results]
    outcome["done"] = ctx.done
    print("OUTCOME " + json.dumps(outcome), flush=True)
    if outcome["raised"] == "RollbackIncompleteError":
        os._exit(3)  # a rollback thread may still be running: do not wait for it


if __name__ == "__main__":
    main()
