"""What a rollback sees, when it runs, and what the records say — on both executors.

The moments under test: a step that records its work in the context and then is
stopped (time limit), crashes (with and without ``ctx.commit()``), or is failed by
the driver (a raising progress callback or subscriber); a rollback that hangs or
fails and is retried; fan-out shards that finish after the first failure;
``SystemExit`` and ``CancelledError`` raised by a step. Signals are in
``test_rollback_signals.py``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from synapse_steps import (
    BaseStep,
    BaseStepContext,
    LocalExecutor,
    Orchestrator,
    RollbackTimeoutError,
    RuntimeContext,
    StepExecutor,
    StepFailedError,
    StepRegistry,
    StepResources,
    StepResult,
)

pytestmark = pytest.mark.timeout(120)


@dataclass
class UnitContext(BaseStepContext):
    done: list[int] = field(default_factory=list)
    seen_by_rollback: dict[str, list[int]] = field(default_factory=dict)


def journal(path: Path, line: str) -> None:
    with open(path, "a") as f:
        f.write(f"{line} {time.time():.6f}\n")


def journal_lines(path: Path) -> list[tuple[str, float]]:
    if not path.exists():
        return []
    return [(line.rsplit(" ", 1)[0], float(line.rsplit(" ", 1)[1])) for line in path.read_text().splitlines()]


class Units(BaseStep[UnitContext]):
    """Does ``units`` units of work (one context entry each), then ends as ``end`` says.

    ``end``: "ok", "raise", "exit" (os._exit), "forever" (keeps working until stopped).
    ``commit``: call ``ctx.commit()`` after every unit. Each unit is journaled after it
    is recorded in the context; the rollback journals what it saw.
    """

    progress_weight = 1.0

    def __init__(
        self, name: str, path: Path, units: int = 5, end: str = "ok", *, commit: bool = False,
        pause_s: float = 0.02, resources: StepResources | None = None, rollback_sleep_s: float = 0.0,
        rollback_failures: int = 0,
    ) -> None:
        self._name, self._path, self._units, self._end = name, path, units, end
        self._commit, self._pause_s = commit, pause_s
        self._resources = resources or StepResources()
        self._rollback_sleep_s = rollback_sleep_s
        self._rollback_failures = rollback_failures

    @property
    def name(self) -> str:
        return self._name

    @property
    def resources(self) -> StepResources:
        return self._resources

    def execute(self, ctx: UnitContext) -> StepResult:
        i = 0
        while i < self._units or self._end == "forever":
            i += 1
            ctx.done.append(i)
            if self._commit:
                ctx.commit()
            journal(self._path, f"unit {self._name} {i}")
            ctx.set_progress(min(i, self._units), self._units)
            time.sleep(self._pause_s)
        if self._end == "raise":
            raise RuntimeError(f"{self._name} broke after {i} units")
        if self._end == "exit":
            time.sleep(1.0)  # many progress intervals: the state has streamed
            os._exit(1)
        return StepResult()

    def rollback(self, ctx: UnitContext, result: StepResult) -> None:
        attempts = sum(1 for line, _ in journal_lines(self._path) if line == f"rollback {self._name}") + 1
        journal(self._path, f"rollback {self._name}")
        if attempts <= self._rollback_failures:
            raise OSError(f"{self._name} rollback failed (attempt {attempts})")
        time.sleep(self._rollback_sleep_s)
        ctx.seen_by_rollback[self._name] = list(ctx.done)
        journal(self._path, f"rolled-back {self._name} saw {len(ctx.done)}")


def run(
    make_executor: Callable[[], StepExecutor], steps: list[BaseStep[Any]], **kwargs: Any
) -> tuple[UnitContext, Orchestrator[UnitContext], BaseException | None]:
    registry: StepRegistry[UnitContext] = StepRegistry()
    for step in steps:
        registry.register(step)
    ctx = UnitContext(runtime_ctx=kwargs.pop("runtime", None) or RuntimeContext())
    orchestrator = Orchestrator(registry, ctx, executor=make_executor(), **kwargs)
    try:
        orchestrator.execute()
    except (StepFailedError, KeyboardInterrupt) as exc:
        return ctx, orchestrator, exc
    return ctx, orchestrator, None


def units_done(path: Path, name: str) -> int:
    return sum(1 for line, _ in journal_lines(path) if line.startswith(f"unit {name} "))


# --- what the rollback sees ---------------------------------------------------------------


@pytest.mark.parametrize("commit", [True, False], ids=["with-commit", "streamed"])
def test_crashed_worker_rollback_sees_the_state_that_reached_the_actor(
    ray_session: None, tmp_path: Path, commit: bool
) -> None:
    from ray_backend import RayExecutor
    from tests.conftest import ray_config

    path = tmp_path / "journal"
    ctx, orchestrator, error = run(
        lambda: RayExecutor(ray_config()), [Units("crash", path, units=5, end="exit", commit=commit)]
    )
    assert isinstance(error, StepFailedError)
    assert str(error) == (
        "Step 'crash' failed: the worker process running step 'crash' (execute) crashed "
        "(it exited or was killed, e.g. os._exit, a signal, or the OOM killer)"
    )
    assert ctx.seen_by_rollback == {"crash": [1, 2, 3, 4, 5]}
    assert ctx.done == [1, 2, 3, 4, 5], "the caller's context holds the same latest state"
    assert orchestrator.records[0].rollback == "done"


@pytest.mark.slow
def test_step_stopped_by_its_time_limit_rollback_sees_every_unit_it_did(ray_session: None, tmp_path: Path) -> None:
    from ray_backend import RayExecutor
    from tests.conftest import ray_config

    path = tmp_path / "journal"
    step = Units("slow", path, end="forever", pause_s=0.05, resources=StepResources(timeout_s=1.5))
    ctx, _orchestrator, error = run(lambda: RayExecutor(ray_config()), [step])
    assert isinstance(error, StepFailedError)
    assert str(error) == "Step 'slow' failed: step 'slow' (execute) timed out after 1.5s (timeout_s) and was stopped"
    done = units_done(path, "slow")
    assert done >= 5 and ctx.seen_by_rollback["slow"] == list(range(1, done + 1))
    rollback_at = next(t for line, t in journal_lines(path) if line == "rollback slow")
    assert max(t for line, t in journal_lines(path) if line.startswith("unit slow")) < rollback_at


@pytest.mark.parametrize("via", ["progress_callback", "subscriber"])
def test_a_raising_driver_callback_stops_the_step_before_rolling_it_back(
    make_executor: Callable[[], StepExecutor], tmp_path: Path, via: str
) -> None:
    path = tmp_path / "journal"

    def broken(*args: Any) -> None:
        event = args[0] if args else None
        if via == "progress_callback" or getattr(event, "kind", None) == "progress":
            raise ValueError("display broke")

    runtime = RuntimeContext()
    kwargs: dict[str, Any] = {"runtime": runtime}
    if via == "progress_callback":
        kwargs["progress_callback"] = broken
    else:
        runtime.subscribe(broken)
    step = Units("work", path, units=40, pause_s=0.05)
    _ctx, orchestrator, error = run(make_executor, [step], **kwargs)

    assert isinstance(error, StepFailedError), error
    expected = (
        "progress_callback raised ValueError: display broke" if via == "progress_callback"
        else "event subscriber test_a_raising_driver_callback_stops_the_step_before_rolling_it_back.<locals>.broken "
        "raised ValueError: display broke"
    )
    assert str(error) == f"Step 'work' failed: {expected}"
    assert units_done(path, "work") < 40, "the step went on to the end"
    lines = journal_lines(path)
    rollback_at = next(t for line, t in lines if line == "rollback work")
    assert all(t < rollback_at for line, t in lines if line.startswith("unit work")), "the step ran during its rollback"
    assert orchestrator.records[0].status == "failed" and orchestrator.records[0].rollback == "done"


def test_progress_that_is_not_a_finite_number_is_ignored_with_a_warning(
    make_executor: Callable[[], StepExecutor], caplog: pytest.LogCaptureFixture
) -> None:
    class Odd(BaseStep[UnitContext]):
        name = "odd"
        progress_weight = 1.0

        def execute(self, ctx: UnitContext) -> StepResult:
            ctx.set_progress(float("nan"), 10)
            ctx.set_progress(1, float("inf"))
            ctx.set_progress(5, 10)
            return StepResult()

    seen: list[tuple[int, int]] = []
    with caplog.at_level(logging.WARNING, logger="synapse_steps"):
        ctx, orchestrator, error = run(make_executor, [Odd()], progress_callback=lambda c, t: seen.append((c, t)))
    assert error is None
    assert seen == [(50, 100), (100, 100)]
    assert ctx.runtime_ctx.progress["odd"] == (5, 10)
    assert not math.isnan(orchestrator.progress)
    if isinstance(orchestrator.executor, LocalExecutor):  # on Ray only the latest value per step ships
        assert "ignored progress nan/10 for step odd: not a finite number" in caplog.text


@pytest.mark.parametrize("raised", ["SystemExit", "CancelledError"])
def test_base_exceptions_from_a_step_fail_it_and_roll_back_the_same_on_both_executors(
    make_executor: Callable[[], StepExecutor], tmp_path: Path, raised: str
) -> None:
    class Leaves(BaseStep[UnitContext]):
        name = "leaves"
        progress_weight = 1.0

        def execute(self, ctx: UnitContext) -> StepResult:
            ctx.done.append(1)
            if raised == "SystemExit":
                raise SystemExit(3)
            raise asyncio.CancelledError()

        def rollback(self, ctx: UnitContext, result: StepResult) -> None:
            ctx.seen_by_rollback["leaves"] = list(ctx.done)

    path = tmp_path / "journal"
    ctx, orchestrator, error = run(make_executor, [Units("first", path, units=1), Leaves()])
    assert isinstance(error, StepFailedError)
    assert str(error) == ("Step 'leaves' failed: SystemExit: 3" if raised == "SystemExit" else "Step 'leaves' failed: CancelledError")
    assert ctx.seen_by_rollback == {"leaves": [1, 1], "first": [1, 1]}
    assert [r.rollback for r in orchestrator.records] == ["done", "done"]


# --- the rollback's own policy --------------------------------------------------------------


@pytest.mark.slow
def test_a_rollback_past_its_time_limit_is_recorded_failed_and_the_rest_still_run(
    make_executor: Callable[[], StepExecutor], executor_kind: str, tmp_path: Path
) -> None:
    path = tmp_path / "journal"
    hangs = Units("hangs", path, units=1, rollback_sleep_s=30, resources=StepResources(rollback_timeout_s=1))
    started = time.monotonic()
    ctx, orchestrator, error = run(make_executor, [Units("first", path, units=1), hangs, Units("breaks", path, end="raise")])
    took = time.monotonic() - started

    assert isinstance(error, StepFailedError) and str(error) == "Step 'breaks' failed: breaks broke after 5 units"
    assert [r.rollback for r in orchestrator.records] == ["done", "failed", "done"]
    timeout = orchestrator.records[1].rollback_error
    assert isinstance(timeout, RollbackTimeoutError)
    assert error.rollback_exceptions == [timeout]
    assert error.rollback_errors == [f"Rollback failed for step 'hangs': {timeout}"] == ctx.errors
    assert str(timeout) == {
        "local": "rollback of step 'hangs' did not finish within 1s (rollback_timeout_s); "
        "an in-process rollback cannot be stopped and may still be running",
        "ray": "step 'hangs' (rollback) timed out after 1s (rollback_timeout_s) and was stopped",
    }[executor_kind]
    assert "first" in ctx.seen_by_rollback, "the rollbacks after the timed-out one still ran"
    assert took < 15
    assert orchestrator.records[1].duration_s is not None and orchestrator.records[1].duration_s < 1.0


def test_rollback_retries_run_a_failing_rollback_again(make_executor: Callable[[], StepExecutor], tmp_path: Path) -> None:
    path = tmp_path / "journal"
    flaky = Units("flaky", path, units=1, rollback_failures=2, resources=StepResources(rollback_retries=2))
    _ctx, orchestrator, error = run(make_executor, [flaky, Units("breaks", path, end="raise")])
    assert isinstance(error, StepFailedError) and error.rollback_errors == []
    assert [line for line, _ in journal_lines(path)].count("rollback flaky") == 3
    assert orchestrator.records[0].rollback == "done"


@pytest.mark.slow
def test_durations_exclude_rollback_time(make_executor: Callable[[], StepExecutor], tmp_path: Path) -> None:
    path = tmp_path / "journal"
    _ctx, orchestrator, error = run(
        make_executor, [Units("slow-undo", path, units=1, rollback_sleep_s=2.5), Units("breaks", path, units=1, end="raise")]
    )
    assert isinstance(error, StepFailedError)
    # 2.5 s of rollback would push a duration that included it past 2.4 s; a Ray task on a busy machine stays under
    assert all(r.duration_s is not None and r.duration_s < 2.4 for r in orchestrator.records), orchestrator.records
    assert orchestrator.records[0].rollback_duration_s is not None and orchestrator.records[0].rollback_duration_s >= 2.5


# --- fan-out ---------------------------------------------------------------------------------


def _shard(item: tuple[str, int]) -> int:
    folder, index = item
    if index == 0:  # fail only once the other shards are in flight
        deadline = time.monotonic() + 30
        while len(list(Path(folder).glob("started-*"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        raise ValueError("shard 0 broke")
    Path(folder, f"started-{index}").write_text("")
    try:
        time.sleep(0.5)  # in flight when shard 0 fails
    except KeyboardInterrupt:
        pass  # a shard that finishes its work despite the cancel (within the grace on Ray)
    Path(folder, f"shard-{index}").write_text("out")
    journal(Path(folder, "finished"), f"finished {index}")
    return index


@pytest.mark.slow
def test_shards_that_finish_after_the_first_failure_are_in_completed_shards(
    make_executor: Callable[[], StepExecutor], tmp_path: Path
) -> None:
    class Fan(BaseStep[UnitContext]):
        name = "fan"
        progress_weight = 1.0

        def execute(self, ctx: UnitContext) -> StepResult:
            ctx.map(_shard, [(str(tmp_path), i) for i in range(4)], num_cpus=0.1, max_in_flight=4)
            return StepResult()

        def rollback(self, ctx: UnitContext, result: StepResult) -> None:
            for index in result.rollback_data["completed_shards"]:
                Path(tmp_path, f"shard-{index}").unlink()

    _ctx, _orchestrator, error = run(make_executor, [Fan()])
    assert isinstance(error, StepFailedError)
    finished = sorted(int(line.split()[1]) for line, _ in journal_lines(tmp_path / "finished"))
    # All three were in flight when shard 0 failed; each finished after the failure (on Ray
    # within the 1 s grace, swallowing the cancel) and each must be listed for the rollback.
    assert finished == [1, 2, 3]
    assert error.result.rollback_data["completed_shards"] == finished
    assert sorted(p.name for p in tmp_path.glob("shard-*")) == [], "a finished shard's output was left behind"


# --- the context actor stops answering ----------------------------------------------------------


@pytest.mark.slow
def test_a_frozen_context_actor_is_replaced_and_the_time_limit_still_holds(ray_session: None, tmp_path: Path) -> None:
    import ray

    from ray_backend import RayExecutor
    from tests.conftest import ray_config

    executor = RayExecutor(ray_config(actor_timeout_s=1.0))
    executor_namespace = ray_config().ray.namespace
    path = tmp_path / "journal"
    frozen: list[int] = []

    problems: list[BaseException] = []

    def freeze_actor_once_the_step_runs() -> None:
        try:
            deadline = time.monotonic() + 30
            while units_done(path, "slow") < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            actor = ray.get_actor(executor.actor_name, namespace=executor_namespace)
            pid = ray.get(actor.__ray_call__.remote(lambda state: os.getpid()), timeout=10)
            os.kill(pid, signal.SIGSTOP)
            frozen.append(pid)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            problems.append(exc)

    threading.Thread(target=freeze_actor_once_the_step_runs, daemon=True).start()
    step = Units("slow", path, end="forever", pause_s=0.05, resources=StepResources(timeout_s=4))
    started = time.monotonic()
    try:
        ctx, _orchestrator, error = run(lambda: executor, [step])
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert frozen, f"the actor was never frozen: {problems}"
    assert isinstance(error, StepFailedError)
    assert str(error) == "Step 'slow' failed: step 'slow' (execute) timed out after 4s (timeout_s) and was stopped"
    assert time.monotonic() - started < 4 + 10
    assert ctx.seen_by_rollback["slow"] == list(range(1, units_done(path, "slow") + 1))
