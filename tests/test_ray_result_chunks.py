"""``ctx.step_results`` on Ray travels in stored chunks and is fetched only by steps that use it,
and every step still sees — and can change — exactly what it would see in-process."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import ray

from ray_backend.result_chunks import CHUNK, ChunkedResults, LazyResults
from ray_backend.stored_fields import dumps_without_refs
from ray_backend.stored_results import LoadedResults
from ray_backend.transport import ContextTransport
from synapse_steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    RuntimeContext,
    StepExecutor,
    StepRegistry,
    StepResult,
)

pytestmark = pytest.mark.timeout(180)

RUN = 2 * CHUNK + 9  # steps before the one that looks: two full chunks and a tail


@dataclass
class ResultsContext(BaseStepContext):
    seen: dict[str, Any] = field(default_factory=dict)


class Do(BaseStep[ResultsContext]):
    progress_weight = 1.0

    def __init__(self, name: str, body: Callable[[ResultsContext], Any] | None = None) -> None:
        self._name, self._body = name, body

    @property
    def name(self) -> str:
        return self._name

    def execute(self, ctx: ResultsContext) -> StepResult:
        if self._body is not None:
            self._body(ctx)
        return StepResult(data={"step": self._name})


def run(steps: list[Do], executor: StepExecutor, **hooks: Any) -> ResultsContext:
    registry = StepRegistry[ResultsContext]()
    for step in steps:
        registry.register(step)
    ctx = ResultsContext(runtime_ctx=RuntimeContext())
    Orchestrator(registry, ctx, executor=executor, **hooks).execute()
    return ctx


def names(results: list[StepResult]) -> list[str]:
    return [r.data.get("step", "?") for r in results]


def fillers(count: int) -> list[Do]:
    return [Do(f"s{i}") for i in range(count)]


# --- every executor: what a step sees and what it changes -----------------------------------------


def test_a_late_step_sees_every_earlier_result_in_order(make_executor: Callable[[], StepExecutor]) -> None:
    def look(ctx: ResultsContext) -> None:
        ctx.seen["names"] = names(ctx.step_results)
        ctx.seen["last"] = ctx.step_results[-1].data

    ctx = run([*fillers(RUN), Do("look", look)], make_executor())
    assert ctx.seen["names"] == [f"s{i}" for i in range(RUN)]
    assert ctx.seen["last"] == {"step": f"s{RUN - 1}"}
    assert names(ctx.step_results) == [*(f"s{i}" for i in range(RUN)), "look"]


@pytest.mark.slow
def test_a_step_that_changes_earlier_results_changes_them_for_everyone(make_executor: Callable[[], StepExecutor]) -> None:
    def change(ctx: ResultsContext) -> None:
        ctx.step_results[3].data["note"] = "edited in place"
        ctx.step_results[CHUNK + 1] = StepResult(data={"step": "replaced"})
        del ctx.step_results[-1]

    def look(ctx: ResultsContext) -> None:
        ctx.seen["names"] = names(ctx.step_results)
        ctx.seen["note"] = ctx.step_results[3].data.get("note")

    ctx = run([*fillers(RUN), Do("change", change), Do("look", look)], make_executor())
    expected = [f"s{i}" for i in range(RUN - 1)]
    expected[CHUNK + 1] = "replaced"
    assert ctx.seen["names"] == [*expected, "change"]
    assert ctx.seen["note"] == "edited in place"
    assert names(ctx.step_results) == [*expected, "change", "look"]


@pytest.mark.slow
def test_an_entry_replaced_on_the_driver_reaches_later_steps(make_executor: Callable[[], StepExecutor]) -> None:
    def replace_early_entry(name: str, ctx: ResultsContext) -> None:
        if name == "look":
            ctx.step_results[1] = dataclasses.replace(ctx.step_results[1], data={"step": "driver"})

    def look(ctx: ResultsContext) -> None:
        ctx.seen["names"] = names(ctx.step_results)[:3]

    ctx = run([*fillers(RUN), Do("look", look)], make_executor(), before_step=replace_early_entry)
    assert ctx.seen["names"] == ["s0", "driver", "s2"]


@pytest.mark.slow
def test_a_large_bytearray_in_an_early_result_changed_on_the_driver_is_never_stale(
    make_executor: Callable[[], StepExecutor],
) -> None:
    """A value that cannot be made read-only is fingerprinted: changed in place, its chunk is stored again."""

    def blob_then_change(name: str, ctx: ResultsContext) -> None:
        if name == "s5":
            ctx.step_results[0].data["blob"] = bytearray(2 << 20)  # stored with its chunk at s64
        if name == "look":
            ctx.step_results[0].data["blob"][-1] = 7  # in place, after that

    def look(ctx: ResultsContext) -> None:
        ctx.seen["last byte"] = ctx.step_results[0].data["blob"][-1]

    ctx = run([*fillers(CHUNK + 3), Do("look", look)], make_executor(), before_step=blob_then_change)
    assert ctx.seen["last byte"] == 7


# --- Ray: what travels ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_step_that_does_not_use_the_results_never_fetches_them(ray_session: None) -> None:
    from ray_backend import RayExecutor
    from tests.conftest import ray_config

    def check(ctx: ResultsContext) -> None:
        ctx.seen["kind"] = type(ctx.step_results).__name__
        ctx.seen["loaded"] = ctx.step_results.loaded  # type: ignore[attr-defined]

    ctx = run([*fillers(RUN), Do("check", check)], RayExecutor(ray_config()))
    assert ctx.seen == {"kind": "LazyResults", "loaded": False}
    assert type(ctx.step_results) is list and len(ctx.step_results) == RUN + 1


def test_what_each_task_is_sent_stays_small_however_many_results(ray_session: None) -> None:
    ctx = ResultsContext(runtime_ctx=RuntimeContext())
    transport = ContextTransport(ctx)
    sizes, chunk_refs = [], []
    for count in (CHUNK, 10 * CHUNK, 16 * CHUNK + 5):
        ctx.step_results = [StepResult(data={"step": f"s{i}", "pad": "x" * 200}) for i in range(count)]
        sent = transport.snapshot()["step_results"]
        assert isinstance(sent, ChunkedResults)
        sizes.append(len(dumps_without_refs(sent)))
        chunk_refs.append(sent.chunks)
    assert sizes[1] - sizes[0] < 1024  # nine more chunks: nine more references
    tail = len(dumps_without_refs(ctx.step_results[-5:]))
    assert sizes[2] - sizes[0] < tail + 1024  # 15 more references, and the 5 results after the last chunk
    again = transport.snapshot()["step_results"]
    assert again.chunks == chunk_refs[-1]  # nothing stored twice
    stored = [result for chunk in ray.get(list(again.chunks)) for result in chunk]
    assert names(stored + again.tail) == [f"s{i}" for i in range(16 * CHUNK + 5)]


def test_the_lazy_list_loads_on_first_use_and_copies_as_a_plain_list(ray_session: None) -> None:
    results = [StepResult(data={"step": f"s{i}"}) for i in range(CHUNK + 2)]
    sent = ChunkedResults((ray.put(results[:CHUNK]),), results[CHUNK:])

    def fresh() -> LazyResults:
        return LazyResults.of(sent, LoadedResults())

    lazy = fresh()
    assert not lazy.loaded and lazy.as_sent() is sent
    assert len(lazy) == CHUNK + 2 and lazy.loaded and lazy.as_sent() is sent  # read, not changed
    assert names(lazy[-2:]) == [f"s{CHUNK}", f"s{CHUNK + 1}"]
    assert bool(fresh()) and fresh() == results and StepResult() not in fresh()
    assert names(list(reversed(fresh())))[0] == f"s{CHUNK + 1}"
    for copied in (pickle.loads(pickle.dumps(fresh())), copy.copy(fresh()), copy.deepcopy(fresh())):
        assert type(copied) is list and names(copied) == names(results)
    changed = fresh()
    changed.append(StepResult(data={"step": "new"}))
    assert changed.as_sent() is None and names(changed)[-1] == "new"
    edited = fresh()
    edited[0].data["step"] = "edited"
    assert edited.as_sent() is None
