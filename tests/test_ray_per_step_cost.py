"""What a step task costs on Ray, kept small: the run's constants travel to each worker
process once, and the driver's per-step commit to the run's actor is held back after
short steps — but never for long: the actor catches up while the next step runs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import ray

from ray_backend import RayExecutor
from ray_backend.context_actor import RunChannel
from synapse_steps import BaseStep, BaseStepContext, Orchestrator, RuntimeContext, StepRegistry, StepResult
from tests.conftest import ray_config

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("ray_session")]


@dataclass
class CostContext(BaseStepContext):
    seen: dict[str, Any] = field(default_factory=dict)


class Do(BaseStep[CostContext]):
    progress_weight = 1.0

    def __init__(self, name: str, body: Callable[[str, CostContext], None]) -> None:
        self._name, self._body = name, body

    @property
    def name(self) -> str:
        return self._name

    def execute(self, ctx: CostContext) -> StepResult:
        self._body(self._name, ctx)
        return StepResult(data={"step": self._name})


def run(steps: list[Do], executor: RayExecutor) -> CostContext:
    registry = StepRegistry[CostContext]()
    for step in steps:
        registry.register(step)
    ctx = CostContext(runtime_ctx=RuntimeContext())
    Orchestrator(registry, ctx, executor=executor).execute()
    return ctx


def note_constants(name: str, ctx: CostContext) -> None:
    """Which constants object this worker process used for the run (its cache holds it)."""
    from ray_backend.process_slots import shared

    mine = [id(c) for c in shared().constants.values() if c.job_id == ctx.runtime_ctx.job_id]
    ctx.seen[name] = (os.getpid(), mine)


def test_a_worker_process_loads_the_runs_constants_once() -> None:
    ctx = run([Do(f"s{i}", note_constants) for i in range(12)], RayExecutor(ray_config()))
    by_process: dict[int, set[int]] = {}
    for pid, ids in ctx.seen.values():
        assert len(ids) == 1  # exactly this run's constants, cached
        by_process.setdefault(pid, set()).update(ids)
    assert all(len(ids) == 1 for ids in by_process.values())  # the same object for every step in that process


def test_the_runs_actor_catches_up_with_commits_held_back_after_short_steps() -> None:
    """Three short steps, then one that waits until the actor's base holds what all three did."""

    def wait_for_base(name: str, ctx: CostContext) -> None:
        ctx.commit()  # returns once the run's actor is up (its start is not what this measures)
        prefix = f"synapse-steps-run-{ctx.runtime_ctx.job_id}-"
        [state] = [
            RunChannel(actor, key)
            for named in ray.util.list_named_actors(all_namespaces=True) if named["name"].startswith("synapse-steps-context-")
            for actor in [ray.get_actor(named["name"], namespace=named["namespace"])]
            for key in ray.get(actor.open_runs.remote(), timeout=10) if key.startswith(prefix)
        ]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _, base = ray.get(state.send("committed"), timeout=10)
            names = sorted(base.get("seen", {}))
            if names == ["a", "b", "c"]:
                ctx.seen[name] = time.monotonic() + 10 - deadline
                return
            time.sleep(0.01)
        ctx.seen[name] = f"the actor's base never caught up: {names}"

    def mark(name: str, ctx: CostContext) -> None:
        ctx.seen[name] = True

    # b and c end within one interval of a's commit: theirs are held back, then sent at the first poll tick.
    ctx = run([Do("a", mark), Do("b", mark), Do("c", mark), Do("wait", wait_for_base)],
              RayExecutor(ray_config(progress_interval_s=0.5)))
    waited = ctx.seen["wait"]
    assert isinstance(waited, float), waited
    assert waited < 2.0  # about one interval, not the end of the step
