"""``ctx.map`` fan-out: the same contract in-process (threads) and on Ray (tasks)."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from synapse_steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    RuntimeContext,
    StepExecutor,
    StepFailedError,
    StepRegistry,
    StepResources,
    StepResult,
)


@dataclass
class FanContext(BaseStepContext):
    results: list[Any] = field(default_factory=list)
    rollback_saw: list[Any] = field(default_factory=list)


def square_with_pid(x: int) -> tuple[int, int]:
    time.sleep(0.01)
    return x * x, os.getpid()


def fail_on_seven(x: int) -> int:
    if x == 7:
        raise ValueError("seven is cursed")
    time.sleep(0.05 if x < 7 else 2.0)
    return x


def plus_one(x: int) -> int:
    return x + 1


def cursed_at_1500(folder: str, x: int) -> int:
    """Shard 1500 fails; later shards would each take 2 s, then leave a file behind."""
    if x == 1500:
        raise ValueError("shard 1500 is cursed")
    if x > 1500:
        for _ in range(40):  # short sleeps: a polite cancel lands between them
            time.sleep(0.05)
        Path(folder, f"late-{x}").touch()
    return x


def timed(x: int) -> tuple[float, float]:
    start = time.time()
    time.sleep(0.3)
    return start, time.time()


class FanStep(BaseStep[FanContext]):
    name = "fan"
    progress_weight = 0.5

    def __init__(self, fn: Callable[[int], Any], count: int, **map_options: Any) -> None:
        self._fn, self._count, self._options = fn, count, map_options

    def execute(self, ctx: FanContext) -> StepResult:
        ctx.results = ctx.map(self._fn, range(self._count), num_cpus=0.5, **self._options)
        return StepResult(data={"shards": self._count})

    def rollback(self, ctx: FanContext, result: StepResult) -> None:
        ctx.rollback_saw.append(result.rollback_data.get("completed_shards"))


class Before(BaseStep[FanContext]):
    name = "before"
    progress_weight = 0.5

    def execute(self, ctx: FanContext) -> StepResult:
        return StepResult()


def _run(step: BaseStep, make_executor: Callable[[], StepExecutor], seen: list[int] | None = None) -> FanContext:
    registry: StepRegistry = StepRegistry()
    registry.register(Before())
    registry.register(step)
    ctx = FanContext(runtime_ctx=RuntimeContext())
    callback = (lambda current, total: seen.append(current)) if seen is not None else None
    Orchestrator(registry, ctx, callback, executor=make_executor()).execute()
    return ctx


def test_results_come_back_in_input_order(make_executor: Callable[[], StepExecutor], executor_kind: str) -> None:
    ctx = _run(FanStep(square_with_pid, 24), make_executor)
    assert [value for value, _ in ctx.results] == [i * i for i in range(24)]
    if executor_kind == "ray":
        assert os.getpid() not in {pid for _, pid in ctx.results}


def test_shard_progress_moves_inside_the_step_band(make_executor: Callable[[], StepExecutor]) -> None:
    seen: list[int] = []
    _run(FanStep(square_with_pid, 40), make_executor, seen)
    assert seen == sorted(seen) and seen[0] == 50 and seen[-1] == 100
    assert all(50 <= value <= 100 for value in seen)


def test_a_failing_shard_fails_the_step_and_rollback_sees_completed_shards(
    make_executor: Callable[[], StepExecutor],
) -> None:
    registry: StepRegistry = StepRegistry()
    registry.register(FanStep(fail_on_seven, 12, max_in_flight=4))
    ctx = FanContext(runtime_ctx=RuntimeContext())
    start = time.monotonic()
    with pytest.raises(StepFailedError, match=r"shard 7 of 12 failed: ValueError: seven is cursed") as info:
        Orchestrator(registry, ctx, executor=make_executor()).execute()
    # Shards after 7 sleep 2 s each: had they all run, the map would take > 4 s.
    assert time.monotonic() - start < 4.0
    completed = info.value.result.rollback_data["completed_shards"]
    assert ctx.rollback_saw == [completed]
    assert 7 not in completed and set(range(7)) >= set(completed) - set(range(8, 12))
    assert set(range(4)) <= set(completed)


def test_shards_in_flight_are_bounded(make_executor: Callable[[], StepExecutor]) -> None:
    ctx = _run(FanStep(timed, 6, max_in_flight=2), make_executor)
    events = sorted([(start, 1) for start, _ in ctx.results] + [(end, -1) for _, end in ctx.results])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2


def test_bad_max_in_flight_is_an_error_naming_it(make_executor: Callable[[], StepExecutor]) -> None:
    registry: StepRegistry = StepRegistry()
    registry.register(FanStep(square_with_pid, 3, max_in_flight=0))
    with pytest.raises(StepFailedError, match="max_in_flight must be >= 1"):
        Orchestrator(registry, FanContext(runtime_ctx=RuntimeContext()), executor=make_executor()).execute()


@pytest.mark.slow
def test_order_is_kept_across_many_windows(make_executor: Callable[[], StepExecutor]) -> None:
    ctx = _run(FanStep(plus_one, 2000), make_executor)
    assert ctx.results == list(range(1, 2001))


def late_file(folder: str, x: int) -> int:
    """Takes 4 s in short sleeps (a polite cancel lands between them), then leaves a file behind."""
    for _ in range(80):
        time.sleep(0.05)
    Path(folder, f"late-{x}").touch()
    return x


class TimedFan(FanStep):
    @property
    def resources(self) -> StepResources:
        return StepResources(timeout_s=2)


class AddTo:
    def __init__(self, base: int) -> None:
        self.base = base

    def __call__(self, x: int) -> int:
        return self.base + x


def test_a_lambda_a_partial_and_a_callable_object_map_like_a_function(
    make_executor: Callable[[], StepExecutor],
) -> None:
    offset = 10
    for fn in (lambda x: x + offset, functools.partial(int.__add__, 10), AddTo(10)):
        ctx = _run(FanStep(fn, 30), make_executor)
        assert ctx.results == list(range(10, 40))


@pytest.mark.slow
def test_a_failure_mid_map_with_a_large_window_stops_the_shards_in_flight(ray_session: None, tmp_path: Path) -> None:
    from ray_backend import RayExecutor
    from tests.conftest import ray_config

    registry: StepRegistry = StepRegistry()
    registry.register(FanStep(functools.partial(cursed_at_1500, str(tmp_path)), 3000, max_in_flight=1000))
    ctx = FanContext(runtime_ctx=RuntimeContext())
    with pytest.raises(StepFailedError, match=r"^Step 'fan' failed: shard 1500 of 3000 failed: ValueError: shard 1500 is cursed \(\d+ shard\(s\) completed\)$") as info:
        Orchestrator(registry, ctx, executor=RayExecutor(ray_config())).execute()
    rollback = info.value.result.rollback_data
    completed = rollback["completed_shards"]
    # Shard 1500 went out only once 501 shards had finished (1,000 in flight at most).
    assert len(completed) >= 501 and set(completed) <= set(range(1500))
    assert all(rollback["shard_results"][i] == i for i in completed)
    assert ctx.rollback_saw == [completed]
    time.sleep(3.0)  # a late shard not stopped would have finished by now
    assert sorted(os.listdir(tmp_path)) == []



@pytest.mark.slow
def test_a_step_stopped_mid_map_stops_its_shards(ray_session: None, tmp_path: Path) -> None:
    from ray_backend import RayExecutor
    from tests.conftest import ray_config

    registry: StepRegistry = StepRegistry()
    registry.register(TimedFan(functools.partial(late_file, str(tmp_path)), 40))
    with pytest.raises(StepFailedError, match=r"timed out after 2s \(timeout_s\) and was stopped"):
        Orchestrator(registry, FanContext(runtime_ctx=RuntimeContext()), executor=RayExecutor(ray_config())).execute()
    time.sleep(4.0)  # a shard not stopped would have finished by now
    assert sorted(os.listdir(tmp_path)) == []


# The default window on Ray (``ray_backend.shard_map._Window``): pure arithmetic, no cluster.
def test_the_default_window_starts_at_four_times_what_runs_at_once_and_at_least_8() -> None:
    from ray_backend.shard_map import _Window

    assert _Window(None, at_once=1).size == 8
    assert _Window(None, at_once=10).size == 40


def test_fast_shards_grow_the_default_window_to_half_a_second_of_them_up_to_its_cap() -> None:
    from ray_backend.shard_map import _MAX_DEFAULT_WINDOW, _Window

    window = _Window(None, at_once=2)
    time.sleep(0.1)
    window.finished(100)  # at most 1,000 shards/s: half a second of them is at most 500
    assert 8 < window.size <= 500
    window.finished(10**9)  # far faster than any window could hold
    assert window.size == _MAX_DEFAULT_WINDOW == 4096


def test_slow_shards_keep_the_default_window_at_its_start_and_it_never_shrinks() -> None:
    from ray_backend.shard_map import _Window

    window = _Window(None, at_once=2)
    time.sleep(0.2)
    window.finished(1)  # 5 shards/s: half a second of them is under the start
    assert window.size == 8
    window.finished(10**6)
    assert window.size == 4096
    time.sleep(0.2)
    window.finished(10**6 + 1)
    assert window.size == 4096


def test_max_in_flight_given_by_the_caller_is_kept_whatever_the_pace() -> None:
    from ray_backend.shard_map import _Window

    window = _Window(3, at_once=100)
    window.finished(100_000)
    assert window.size == 3


def test_the_default_window_counts_what_the_session_ray_runs_at_once(ray_session: None) -> None:
    import ray

    from ray_backend.shard_map import _at_once
    from synapse_steps.fanout import ShardOptions
    from synapse_steps.resources import StepResources, resolve

    cpus = int(ray.cluster_resources()["CPU"])
    assert _at_once(ShardOptions(resolve(StepResources(num_cpus=0.5)))) == 2 * cpus
    assert _at_once(ShardOptions(resolve(StepResources(num_cpus=0)))) == 16  # asks for nothing: counts as 16
