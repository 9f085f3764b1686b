"""A run whose context actor is slow to start: the driver never waits for it, and every event
a step shipped while it was starting reaches the caller once, in order.

The actor's start is made slow for real (its ``__init__`` sleeps), as on a busy machine
where a new Python process takes seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import ray

from ray_backend import RayExecutor, runs_actor
from ray_backend.context_actor import RunsHost
from synapse_steps import BaseStep, BaseStepContext, Orchestrator, RuntimeContext, StepRegistry, StepResult
from tests.conftest import ray_config

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("ray_session")]

ACTOR_START_S = 6.0


class SlowStartingRunsHost(RunsHost):
    def __init__(self) -> None:
        time.sleep(ACTOR_START_S)
        super().__init__()


@dataclass
class TickContext(BaseStepContext):
    pass


class Ticks(BaseStep[TickContext]):
    """Logs ``count`` messages over about ``seconds`` (several shipping intervals)."""

    progress_weight = 1.0

    def __init__(self, name: str, count: int, seconds: float, commit_first: bool = False) -> None:
        self._name, self.count, self.seconds, self.commit_first = name, count, seconds, commit_first

    @property
    def name(self) -> str:
        return self._name

    def execute(self, ctx: TickContext) -> StepResult:
        if self.commit_first:
            ctx.commit()  # waits until the actor is up
        for i in range(self.count):
            ctx.log_message(f"{self._name} {i}")
            ctx.set_progress(i + 1, self.count)
            time.sleep(self.seconds / self.count)
        return StepResult()


def run(steps: list[Ticks]) -> tuple[TickContext, float]:
    registry = StepRegistry[TickContext]()
    for step in steps:
        registry.register(step)
    ctx = TickContext(runtime_ctx=RuntimeContext())
    start = time.monotonic()
    Orchestrator(registry, ctx, executor=RayExecutor(ray_config(progress_interval_s=0.05))).execute()
    return ctx, time.monotonic() - start


def messages(ctx: TickContext) -> list[str]:
    return [e.data["message"] for e in ctx.runtime_ctx.events if e.kind == "message"]


@pytest.fixture
def slow_actor(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The run starts a context actor of its own (not the session's, already up) that starts slowly."""
    started: dict[Any, runs_actor.SharedActor] = {}
    monkeypatch.setattr(runs_actor, "_runs_host_actor", ray.remote(SlowStartingRunsHost))
    monkeypatch.setattr(runs_actor, "_actors", started)
    yield
    for actor in started.values():
        ray.kill(actor.handle, no_restart=True)


@pytest.mark.usefixtures("slow_actor")
def test_short_steps_do_not_wait_for_a_starting_actor_and_lose_no_event() -> None:
    ctx, elapsed = run([Ticks("first", 6, 0.4), Ticks("second", 3, 0.2)])
    assert messages(ctx) == [f"first {i}" for i in range(6)] + [f"second {i}" for i in range(3)]
    assert ctx.runtime_ctx.progress == {"first": (6, 6), "second": (3, 3)}
    assert elapsed < ACTOR_START_S - 1  # it never waited for the actor (its start alone takes longer)


@pytest.mark.slow
@pytest.mark.usefixtures("slow_actor")
def test_batches_shipped_before_the_actor_came_up_are_not_delivered_twice() -> None:
    """The first step's batches reach the actor after the driver replayed their copies; a later step drains it."""
    ctx, _ = run([Ticks("first", 6, 0.4), Ticks("later", 4, 0.4, commit_first=True)])
    assert messages(ctx) == [f"first {i}" for i in range(6)] + [f"later {i}" for i in range(4)]
