"""Large values on Ray: step results by reference, and never a stale read after an in-place change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import ray

from ray_backend import RayExecutor
from ray_backend.context_actor import RunChannel
from ray_backend.stored_fields import StoredField, dumps_without_refs
from ray_backend.transport import ContextTransport
from synapse_steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    RuntimeContext,
    StepFailedError,
    StepRegistry,
    StepResult,
)
from tests.conftest import ray_config

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.timeout(120)]

BIG = 8 * 1024 * 1024  # float64 items: 64 MiB


@dataclass
class BigContext(BaseStepContext):
    array: Any = None
    blob: Any = None
    seen: dict[str, Any] = field(default_factory=dict)


class Step(BaseStep[BigContext]):
    """A step whose execute and rollback are plain functions (shipped by value with this module)."""

    def __init__(
        self,
        name: str,
        execute: Callable[[BigContext], StepResult | None],
        rollback: Callable[[BigContext, StepResult], None] | None = None,
    ) -> None:
        self._name, self._execute, self._rollback = name, execute, rollback

    @property
    def name(self) -> str:
        return self._name

    progress_weight = 1.0

    def execute(self, ctx: BigContext) -> StepResult:
        return self._execute(ctx) or StepResult()

    def rollback(self, ctx: BigContext, result: StepResult) -> None:
        if self._rollback is not None:
            self._rollback(ctx, result)


def _run(*steps: BaseStep, before_step: Callable[[str, Any], None] | None = None) -> tuple[BigContext, RayExecutor]:
    registry: StepRegistry = StepRegistry()
    for step in steps:
        registry.register(step)
    ctx = BigContext(runtime_ctx=RuntimeContext())
    executor = RayExecutor(ray_config())
    Orchestrator(registry, ctx, before_step=before_step, executor=executor).execute()
    return ctx, executor


def _make(ctx: BigContext) -> StepResult:
    return StepResult(data={"arr": np.arange(BIG, dtype=np.float64), "small": 7})


def _read(name: str) -> Callable[[BigContext], None]:
    def read(ctx: BigContext) -> None:
        arr = ctx.step_results[0].data["arr"]
        ctx.seen[name] = (type(arr).__name__, arr.nbytes, float(arr[-1]), ctx.step_results[0].data["small"])

    return read


# --- large results by reference --------------------------------------------------------------


def test_a_64_mib_result_reaches_later_steps_and_the_driver_by_reference() -> None:
    committed: dict[str, Any] = {}
    holder: dict[str, RayExecutor] = {}

    def look_at_what_comes_back(name: str, ctx: BigContext) -> None:
        """What the previous task sent back, as the driver committed it to the run's actor."""
        if name in ("read2", "read3"):
            executor = holder["executor"]
            state = RunChannel(ray.get_actor(executor.actor_name, namespace="synapse-steps"), executor.run_key)
            _, snapshot = ray.get(state.send("committed"), timeout=30)
            committed[name] = snapshot

    registry: StepRegistry = StepRegistry()
    for step in [Step("make", _make), *(Step(f"read{i}", _read(f"read{i}")) for i in (1, 2, 3))]:
        registry.register(step)
    ctx = BigContext(runtime_ctx=RuntimeContext())
    # Commits after short steps go to the actor at most once per progress interval: this
    # one is shorter than any step, so the actor's base is each step's outcome.
    holder["executor"] = RayExecutor(ray_config(progress_interval_s=0.001))
    Orchestrator(registry, ctx, before_step=look_at_what_comes_back, executor=holder["executor"]).execute()

    expected = ("ndarray", BIG * 8, float(BIG - 1), 7)
    assert ctx.seen == {"read1": expected, "read2": expected, "read3": expected}
    # The driver holds the real value, read-only (the object store's copy)
    arr = ctx.step_results[0].data["arr"]
    assert isinstance(arr, np.ndarray) and arr.nbytes == BIG * 8 and arr[-1] == BIG - 1
    assert arr.flags.writeable is False
    # Workers hand the value back as the reference it came as, the same one each time
    refs = [snapshot["step_results"].tail[0].data["arr"] for snapshot in committed.values()]
    assert len(refs) == 2 and all(isinstance(ref, StoredField) for ref in refs) and refs[0] == refs[1]
    assert all(snapshot["step_results"].tail[0].data["small"] == 7 for snapshot in committed.values())
    assert all(len(dumps_without_refs(snapshot)) < 64 * 1024 for snapshot in committed.values())


def test_what_each_task_is_sent_holds_a_large_result_as_one_reference() -> None:
    ctx = BigContext(runtime_ctx=RuntimeContext())
    value = np.arange(BIG, dtype=np.float64)
    ctx.step_results.append(StepResult(data={"arr": value, "small": 7}))
    transport = ContextTransport(ctx)
    sent = [transport.snapshot(), transport.snapshot()]
    refs = [snapshot["step_results"].tail[0].data["arr"] for snapshot in sent]
    assert all(isinstance(ref, StoredField) for ref in refs) and refs[0] == refs[1]  # stored once
    assert all(len(dumps_without_refs(snapshot)) < 64 * 1024 for snapshot in sent)
    assert ray.get(refs[0].ref, timeout=30)[refs[0].key][-1] == BIG - 1
    assert ctx.step_results[0].data["arr"] is value and value.flags.writeable is False  # the caller's own, sealed
    rollback = transport.result_by_reference(ctx.step_results[0])
    assert rollback.data["arr"] == refs[0] and rollback.data["small"] == 7


def test_a_large_rollback_value_reaches_the_rollback() -> None:
    def make(ctx: BigContext) -> StepResult:
        return StepResult(rollback_data={"undo": np.full(BIG // 4, 3.0)})

    def undo(ctx: BigContext, result: StepResult) -> None:
        value = result.rollback_data["undo"]
        ctx.seen["undo"] = (type(value).__name__, value.nbytes, float(value.sum()))

    def fail(ctx: BigContext) -> None:
        raise RuntimeError("later step failed")

    registry: StepRegistry = StepRegistry()
    registry.register(Step("make", make, undo))
    registry.register(Step("fail", fail))
    ctx = BigContext(runtime_ctx=RuntimeContext())
    with pytest.raises(StepFailedError, match="later step failed"):
        Orchestrator(registry, ctx, executor=RayExecutor(ray_config())).execute()
    assert ctx.seen == {"undo": ("ndarray", BIG // 4 * 8, 3.0 * (BIG // 4))}


# --- never silently stale ---------------------------------------------------------------------


def test_the_driver_cannot_change_a_stored_array_in_place() -> None:
    """``before_step`` may replace a large value, never change the stored copy unseen."""
    errors: list[str] = []

    def hook(name: str, ctx: BigContext) -> None:
        if name == "second":
            try:
                ctx.array[0] = 1.0
            except ValueError as exc:
                errors.append(str(exc))
            ctx.array = np.full(1 << 18, 5.0)  # 2 MiB, a new value: it reaches the step

    def first(ctx: BigContext) -> None:
        ctx.seen["first"] = float(ctx.array[0])

    def second(ctx: BigContext) -> None:
        ctx.seen["second"] = float(ctx.array[0])

    registry: StepRegistry = StepRegistry()
    registry.register(Step("first", first))
    registry.register(Step("second", second))
    ctx = BigContext(runtime_ctx=RuntimeContext(), array=np.zeros(1 << 18))
    Orchestrator(registry, ctx, before_step=hook, executor=RayExecutor(ray_config())).execute()
    assert errors == ["assignment destination is read-only"]
    assert ctx.seen == {"first": 0.0, "second": 5.0}


def test_a_result_array_on_the_driver_cannot_be_changed_in_place() -> None:
    errors: list[str] = []

    def hook(name: str, ctx: BigContext) -> None:
        if name == "read1":
            try:
                ctx.step_results[0].data["arr"][-1] = 0.0
            except ValueError as exc:
                errors.append(str(exc))

    ctx, _ = _run(Step("make", _make), Step("read1", _read("read1")), before_step=hook)
    assert errors == ["assignment destination is read-only"]
    assert ctx.seen["read1"][2] == float(BIG - 1)


def test_an_in_place_change_the_driver_cannot_stop_reaches_later_steps() -> None:
    """A ``bytearray`` cannot be made read-only: changed in place, it is stored again."""

    def hook(name: str, ctx: BigContext) -> None:
        if name == "second":
            ctx.blob[0] = 9

    def first(ctx: BigContext) -> None:
        ctx.seen["first"] = ctx.blob[0]

    def second(ctx: BigContext) -> None:
        ctx.seen["second"] = ctx.blob[0]

    registry: StepRegistry = StepRegistry()
    registry.register(Step("first", first))
    registry.register(Step("second", second))
    ctx = BigContext(runtime_ctx=RuntimeContext(), blob=bytearray(2 << 20))
    Orchestrator(registry, ctx, before_step=hook, executor=RayExecutor(ray_config())).execute()
    assert ctx.seen == {"first": 0, "second": 9}


def test_a_step_cannot_change_a_stored_array_in_place() -> None:
    def change(ctx: BigContext) -> None:
        ctx.array[0] = 1.0

    registry: StepRegistry = StepRegistry()
    registry.register(Step("change", change))
    ctx = BigContext(runtime_ctx=RuntimeContext(), array=np.zeros(1 << 18))
    with pytest.raises(StepFailedError, match="Step 'change' failed: assignment destination is read-only"):
        Orchestrator(registry, ctx, executor=RayExecutor(ray_config())).execute()


def test_a_step_cannot_change_an_earlier_result_array_in_place() -> None:
    def change(ctx: BigContext) -> None:
        ctx.step_results[0].data["arr"][0] = 1.0

    with pytest.raises(StepFailedError, match="Step 'change' failed: assignment destination is read-only"):
        _run(Step("make", _make), Step("change", change))


def test_a_step_gets_a_stored_bytearray_it_cannot_change_in_place() -> None:
    """The object store hands a worker large byte strings as ``bytes``: a change fails at once."""

    def change(ctx: BigContext) -> None:
        ctx.blob[0] = 9

    registry: StepRegistry = StepRegistry()
    registry.register(Step("change", change))
    ctx = BigContext(runtime_ctx=RuntimeContext(), blob=bytearray(2 << 20))
    with pytest.raises(StepFailedError, match="Step 'change' failed: 'bytes' object does not support item assignment"):
        Orchestrator(registry, ctx, executor=RayExecutor(ray_config())).execute()
