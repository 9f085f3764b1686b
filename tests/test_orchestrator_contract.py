"""The orchestrator's behavioural contract, proven on every executor.

Each test takes ``make_executor`` (conftest) and so runs once in-process and once on
Ray; the assertions are the same on both, except where a test checks which process
ran a step.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from synapse_steps import (
    BaseStep,
    Orchestrator,
    StepDefinitionError,
    StepExecutor,
    StepFailedError,
    StepRegistry,
    StepResult,
)
from tests.steps_kit import KitContext, KitStep, new_ctx, registry_of

pytestmark = pytest.mark.timeout(120)

MakeExecutor = Callable[[], StepExecutor]


# --- helpers and small steps ------------------------------------------------------


def orchestrate(
    make_executor: MakeExecutor,
    steps: Sequence[BaseStep],
    ctx: KitContext | None = None,
    progress_callback: Callable[[int, int], None] | None = None,
    before_step: Callable[[str, Any], None] | None = None,
) -> tuple[Orchestrator, KitContext]:
    ctx = ctx if ctx is not None else new_ctx()
    orchestrator = Orchestrator(registry_of(*steps), ctx, progress_callback, before_step, executor=make_executor())
    return orchestrator, ctx


def executed(ctx: KitContext) -> list[str]:
    return [name for action, name, _ in ctx.trail if action == "execute"]


def rolled_back(ctx: KitContext) -> list[str]:
    return [name for action, name, _ in ctx.trail if action == "rollback"]


class ReturnsDict(KitStep):
    """A step whose execute forgets to return a StepResult."""

    def execute(self, ctx: KitContext) -> Any:  # type: ignore[override]
        super().execute(ctx)
        return {"ok": True}


class SeesHook(KitStep):
    """Records what the before_step hook had put on the context when execute ran."""

    def execute(self, ctx: KitContext) -> StepResult:
        ctx.values.setdefault("seen_by_step", {})[self.name] = ctx.values.get("hook_mark")
        return super().execute(ctx)


class SkipIfFlag(KitStep):
    """Skipped when an earlier step set ``values['skip_me']``."""

    def can_skip(self, ctx: KitContext) -> bool:
        ctx.values.setdefault("skip_checks", []).append((self.name, dict(ctx.values).get("skip_me")))
        return bool(ctx.values.get("skip_me"))


class Counter(KitStep):
    """Reads the counter an earlier step left and adds one."""

    def execute(self, ctx: KitContext) -> StepResult:
        ctx.values["count"] = ctx.values.get("count", 0) + 1
        ctx.values.setdefault("counts_seen", []).append(ctx.values["count"])
        return super().execute(ctx)


class PacedTicks(KitStep):
    """Reports i/n progress ``n`` times, pausing before each report."""

    def __init__(self, name: str, weight: float, n: int, pause_s: float) -> None:
        super().__init__(name, weight)
        self._n, self._pause = n, pause_s

    def execute(self, ctx: KitContext) -> StepResult:
        ctx.commit()  # on Ray: returns once the run's context actor is up, so no tick waits for its start
        for i in range(1, self._n + 1):
            time.sleep(self._pause)
            ctx.set_progress(i, self._n)
        return super().execute(ctx)


class HalfThenWait(KitStep):
    """Reports 1/4 and 2/4 back to back, works for a second without reporting, then 4/4."""

    def execute(self, ctx: KitContext) -> StepResult:
        ctx.commit()  # on Ray: returns once the run's context actor is up, so no report waits for its start
        time.sleep(0.2)
        ctx.set_progress(0, 4)
        time.sleep(0.2)
        ctx.set_progress(1, 4)
        ctx.set_progress(2, 4)
        time.sleep(1.0)
        ctx.set_progress(4, 4)
        return super().execute(ctx)


class Chatty(KitStep):
    """Logs an event, metrics and a message, with pauses so a worker sends them in batches."""

    def execute(self, ctx: KitContext) -> StepResult:
        ctx.log("started", {"step": self.name})
        time.sleep(0.08)
        ctx.set_metrics({"loss": 0.5})
        ctx.log_message(f"{self.name} halfway", "info")
        time.sleep(0.08)
        ctx.log("finished", {"step": self.name}, level="debug")
        return super().execute(ctx)


# --- order, results, summary ------------------------------------------------------


def test_steps_run_in_registration_order(make_executor):
    orchestrator, ctx = orchestrate(make_executor, [KitStep("load"), KitStep("train"), KitStep("save")])
    orchestrator.execute()
    assert executed(ctx) == ["load", "train", "save"]
    assert rolled_back(ctx) == []


def test_success_returns_the_summary(make_executor):
    orchestrator, _ = orchestrate(make_executor, [KitStep("a"), KitStep("b"), KitStep("c")])
    assert orchestrator.execute() == {"success": True, "steps_executed": 3, "steps_total": 3}


def test_skipped_steps_are_not_counted_as_executed(make_executor):
    orchestrator, ctx = orchestrate(make_executor, [KitStep("a"), KitStep("b", skip=True), KitStep("c")])
    assert orchestrator.execute() == {"success": True, "steps_executed": 2, "steps_total": 3}
    assert executed(ctx) == ["a", "c"]


def test_every_result_is_appended_to_step_results_in_order(make_executor):
    orchestrator, ctx = orchestrate(make_executor, [KitStep("a"), KitStep("b", skip=True), KitStep("c")])
    orchestrator.execute()
    results = ctx.step_results
    assert len(results) == 3
    assert results[0].success and results[0].data == {"step": "a"} and not results[0].skipped
    assert results[1].success and results[1].skipped
    assert results[2].success and results[2].data == {"step": "c"}


def test_step_results_on_failure_hold_every_result_up_to_the_failed_one(make_executor):
    orchestrator, ctx = orchestrate(
        make_executor, [KitStep("a"), KitStep("b", skip=True), KitStep("c", fail="result"), KitStep("d")]
    )
    with pytest.raises(StepFailedError):
        orchestrator.execute()
    assert [(r.success, r.skipped, r.error) for r in ctx.step_results] == [
        (True, False, None),
        (True, True, None),
        (False, False, "c said no"),
    ]


# --- skip ---------------------------------------------------------------------------


def test_a_skipped_step_gets_a_skipped_result_and_never_runs(make_executor):
    orchestrator, ctx = orchestrate(make_executor, [KitStep("a"), KitStep("b", skip=True)])
    orchestrator.execute()
    assert executed(ctx) == ["a"]
    skipped = [r for r in ctx.step_results if r.skipped]
    assert len(skipped) == 1
    assert skipped[0].success is True and skipped[0].error is None


def test_a_skipped_step_is_never_rolled_back(make_executor):
    orchestrator, ctx = orchestrate(
        make_executor, [KitStep("a"), KitStep("b", skip=True), KitStep("c", fail="raise")]
    )
    with pytest.raises(StepFailedError):
        orchestrator.execute()
    assert rolled_back(ctx) == ["c", "a"]


def test_a_skipped_step_counts_as_complete_for_progress(make_executor):
    calls: list[tuple[int, int]] = []
    orchestrator, _ = orchestrate(
        make_executor,
        [KitStep("a", 0.2, skip=True), KitStep("b", 0.6), KitStep("c", 0.2, skip=True)],
        progress_callback=lambda current, total: calls.append((current, total)),
    )
    orchestrator.execute()
    assert calls == [(20, 100), (80, 100), (100, 100)]
    assert orchestrator.progress == 1.0


def test_can_skip_sees_the_latest_committed_context(make_executor):
    orchestrator, ctx = orchestrate(
        make_executor,
        [SkipIfFlag("check1"), KitStep("flagger", sets={"skip_me": True}), SkipIfFlag("check2")],
    )
    assert orchestrator.execute() == {"success": True, "steps_executed": 2, "steps_total": 3}
    assert executed(ctx) == ["check1", "flagger"]
    assert ctx.values["skip_checks"] == [("check1", None), ("check2", True)]


def test_each_step_sees_what_the_previous_steps_committed(make_executor):
    orchestrator, ctx = orchestrate(make_executor, [Counter("one"), Counter("two"), Counter("three")])
    orchestrator.execute()
    assert ctx.values["count"] == 3
    assert ctx.values["counts_seen"] == [1, 2, 3]


# --- failures -----------------------------------------------------------------------


def test_an_exception_in_execute_becomes_a_failed_result_with_traceback(make_executor):
    orchestrator, ctx = orchestrate(make_executor, [KitStep("a"), KitStep("b", fail="raise")])
    with pytest.raises(StepFailedError) as info:
        orchestrator.execute()
    result = info.value.result
    assert result.success is False
    assert result.error == "b exploded"
    assert result.traceback is not None
    assert 'raise ValueError(f"{self._name} exploded")' in result.traceback
    assert "ValueError: b exploded" in result.traceback
    assert info.value.traceback == result.traceback
    failed = ctx.step_results[-1]
    assert failed.success is False and failed.error == "b exploded"
    assert 'raise ValueError(f"{self._name} exploded")' in (failed.traceback or "")


def test_a_success_false_result_fails_the_run(make_executor):
    orchestrator, ctx = orchestrate(make_executor, [KitStep("a"), KitStep("b", fail="result"), KitStep("c")])
    with pytest.raises(StepFailedError) as info:
        orchestrator.execute()
    assert info.value.step_name == "b"
    assert info.value.result.error == "b said no"
    assert info.value.result.rollback_data == {"by": "b"}
    assert executed(ctx) == ["a", "b"]


def test_execute_returning_a_non_step_result_fails_that_step(make_executor):
    orchestrator, ctx = orchestrate(make_executor, [KitStep("a"), ReturnsDict("sloppy"), KitStep("c")])
    with pytest.raises(StepFailedError) as info:
        orchestrator.execute()
    assert info.value.step_name == "sloppy"
    error = "step 'sloppy' returned dict from execute(); it must return a StepResult"
    assert info.value.result.error == error
    assert str(info.value) == f"Step 'sloppy' failed: {error}"
    assert executed(ctx) == ["a", "sloppy"]
    assert rolled_back(ctx) == ["sloppy", "a"]


def test_the_raised_error_is_a_runtime_error_naming_step_and_error(make_executor):
    orchestrator, _ = orchestrate(make_executor, [KitStep("load"), KitStep("train", fail="raise")])
    with pytest.raises(RuntimeError) as info:
        orchestrator.execute()
    error = info.value
    assert isinstance(error, StepFailedError)
    assert str(error) == "Step 'train' failed: train exploded"
    assert error.step_name == "train"
    assert isinstance(error.result, StepResult) and error.result.error == "train exploded"
    assert error.rollback_errors == []


def test_failure_rolls_back_every_executed_step_in_reverse_including_the_failed_one(make_executor):
    orchestrator, ctx = orchestrate(
        make_executor, [KitStep("a"), KitStep("b"), KitStep("c", fail="result"), KitStep("d")]
    )
    with pytest.raises(StepFailedError):
        orchestrator.execute()
    assert executed(ctx) == ["a", "b", "c"]
    assert rolled_back(ctx) == ["c", "b", "a"]


def test_each_rollback_gets_its_own_result(make_executor):
    orchestrator, ctx = orchestrate(make_executor, [KitStep("a"), KitStep("b"), KitStep("c", fail="result")])
    with pytest.raises(StepFailedError):
        orchestrator.execute()
    assert ctx.values["rollback_results"] == [
        ("c", False, {"by": "c"}),
        ("b", True, {"undo": "b"}),
        ("a", True, {"undo": "a"}),
    ]


def test_a_failing_rollback_is_recorded_and_the_rest_still_run(make_executor):
    orchestrator, ctx = orchestrate(
        make_executor, [KitStep("a"), KitStep("b", rollback_fails=True), KitStep("c", fail="raise")]
    )
    with pytest.raises(StepFailedError) as info:
        orchestrator.execute()
    assert rolled_back(ctx) == ["c", "b", "a"]
    assert len(ctx.errors) == 1
    assert ctx.errors == ["Rollback failed for step 'b': b rollback broke"]
    assert info.value.rollback_errors == ctx.errors
    assert info.value.step_name == "c"
    assert str(info.value) == "Step 'c' failed: c exploded"


def test_every_failing_rollback_is_recorded_in_order(make_executor):
    orchestrator, ctx = orchestrate(
        make_executor,
        [KitStep("a", rollback_fails=True), KitStep("b"), KitStep("c", fail="result", rollback_fails=True)],
    )
    with pytest.raises(StepFailedError) as info:
        orchestrator.execute()
    assert rolled_back(ctx) == ["c", "b", "a"]
    assert ctx.errors == [
        "Rollback failed for step 'c': c rollback broke",
        "Rollback failed for step 'a': a rollback broke",
    ]
    assert info.value.rollback_errors == ctx.errors


class SkipCheckBreaks(KitStep):
    def can_skip(self, ctx: KitContext) -> bool:
        raise KeyError("no such flag")


def test_a_can_skip_that_raises_fails_that_step_and_rolls_back_the_earlier_ones(make_executor):
    orchestrator, ctx = orchestrate(make_executor, [KitStep("a"), SkipCheckBreaks("b"), KitStep("c")])
    with pytest.raises(StepFailedError) as info:
        orchestrator.execute()
    assert info.value.step_name == "b"
    assert str(info.value) == "Step 'b' failed: can_skip raised KeyError: 'no such flag'"
    assert executed(ctx) == ["a"]
    assert rolled_back(ctx) == ["a"]


# --- the hook and the caller's context ----------------------------------------------


def test_before_step_is_called_before_each_step_and_its_changes_reach_the_step(make_executor):
    calls: list[tuple[str, bool]] = []

    def before_step(name: str, ctx: KitContext) -> None:
        calls.append((name, isinstance(ctx, KitContext)))
        ctx.values["hook_mark"] = f"before {name}"

    orchestrator, ctx = orchestrate(
        make_executor, [SeesHook("a"), SeesHook("b", skip=True), SeesHook("c")], before_step=before_step
    )
    orchestrator.execute()
    assert [name for name, _ in calls] == ["a", "b", "c"]
    assert all(is_ctx for _, is_ctx in calls)
    assert ctx.values["seen_by_step"] == {"a": "before a", "c": "before c"}


def test_before_step_is_passed_the_callers_context(make_executor):
    seen: list[object] = []
    orchestrator, ctx = orchestrate(
        make_executor, [KitStep("a"), KitStep("b")], before_step=lambda name, c: seen.append(c)
    )
    orchestrator.execute()
    assert len(seen) == 2
    assert all(c is ctx for c in seen)


def test_callers_context_holds_the_committed_state_after_success(make_executor):
    ctx = new_ctx()
    orchestrator, _ = orchestrate(
        make_executor, [KitStep("a", sets={"x": 1}), KitStep("b", sets={"y": [1, 2]})], ctx=ctx
    )
    orchestrator.execute()
    assert orchestrator.context is ctx
    assert ctx.values == {"x": 1, "y": [1, 2]}
    assert executed(ctx) == ["a", "b"]
    assert ctx.current_step is None


def test_callers_context_holds_the_committed_state_after_failure(make_executor):
    ctx = new_ctx()
    orchestrator, _ = orchestrate(
        make_executor, [KitStep("a", sets={"x": 1}), KitStep("b", sets={"y": 2}, fail="raise")], ctx=ctx
    )
    with pytest.raises(StepFailedError):
        orchestrator.execute()
    assert ctx.values["x"] == 1
    assert ctx.values["y"] == 2  # set before the exception: the failed step's changes are kept for rollback
    assert [name for name, _, _ in ctx.values["rollback_results"]] == ["b", "a"]
    assert [(a, n) for a, n, _ in ctx.trail] == [
        ("execute", "a"),
        ("execute", "b"),
        ("rollback", "b"),
        ("rollback", "a"),
    ]
    assert ctx.current_step is None


def test_steps_and_rollbacks_run_in_the_expected_process(make_executor, executor_kind):
    orchestrator, ctx = orchestrate(make_executor, [KitStep("a"), KitStep("b", fail="raise")])
    with pytest.raises(StepFailedError):
        orchestrator.execute()
    pids = {(action, name): pid for action, name, pid in ctx.trail}
    assert set(pids) == {("execute", "a"), ("execute", "b"), ("rollback", "b"), ("rollback", "a")}
    if executor_kind == "local":
        assert set(pids.values()) == {os.getpid()}
    else:
        assert os.getpid() not in set(pids.values())


# --- progress -----------------------------------------------------------------------


def test_seed_weights_give_20_80_100_when_steps_do_not_report(make_executor):
    calls: list[tuple[int, int]] = []
    orchestrator, _ = orchestrate(
        make_executor,
        [KitStep("load", 0.2), KitStep("train", 0.6), KitStep("upload", 0.2)],
        progress_callback=lambda current, total: calls.append((current, total)),
    )
    orchestrator.execute()
    assert calls == [(20, 100), (80, 100), (100, 100)]
    assert orchestrator.progress == 1.0


def test_set_progress_moves_inside_the_steps_band(make_executor):
    calls: list[tuple[int, int]] = []
    orchestrator, _ = orchestrate(
        make_executor,
        [KitStep("load", 0.2), PacedTicks("train", 0.6, n=5, pause_s=0.15), KitStep("upload", 0.2)],
        progress_callback=lambda current, total: calls.append((current, total)),
    )
    orchestrator.execute()
    assert calls == [(20, 100), (32, 100), (44, 100), (56, 100), (68, 100), (80, 100), (100, 100)]
    assert orchestrator.progress == 1.0


def test_a_hot_progress_loop_stays_monotonic_within_its_band(make_executor):
    calls: list[int] = []
    orchestrator, _ = orchestrate(
        make_executor,
        [KitStep("load", 0.2), KitStep("train", 0.6, ticks=5000), KitStep("upload", 0.2)],
        progress_callback=lambda current, total: calls.append(current),
    )
    orchestrator.execute()
    assert calls == sorted(set(calls)), "progress went backwards or repeated a value"
    assert calls[0] == 20 and calls[-2:] == [80, 100]
    assert all(20 <= c <= 80 for c in calls[:-1])
    assert orchestrator.progress == 1.0


def test_progress_reaches_the_callback_while_the_step_is_still_working(make_executor):
    seen: list[tuple[int, float]] = []
    orchestrator, _ = orchestrate(
        make_executor,
        [KitStep("load", 0.2), HalfThenWait("train", 0.6), KitStep("upload", 0.2)],
        progress_callback=lambda current, total: seen.append((current, time.monotonic())),
    )
    orchestrator.execute()
    at = dict(seen)
    values = [p for p, _ in seen]
    # 1/4 (35%) may be coalesced into 2/4 by a remote executor; 2/4 itself must not wait
    # for the step's next report, a second later.
    assert values in ([20, 35, 50, 80, 100], [20, 50, 80, 100])
    assert at[80] - at[50] > 0.5, "2/4 reached the callback only when the step reported again"


def test_progress_property_holds_the_exact_fraction_after_failure(make_executor):
    orchestrator, _ = orchestrate(make_executor, [KitStep("a", 1), KitStep("b", 3, fail="raise")])
    with pytest.raises(StepFailedError):
        orchestrator.execute()
    assert orchestrator.progress == pytest.approx(0.25)


# --- definition errors before anything runs -----------------------------------------


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")], ids=["negative", "nan", "inf"])
def test_bad_weight_raises_before_any_step_runs(make_executor, bad):
    calls: list[int] = []
    orchestrator, ctx = orchestrate(
        make_executor,
        [KitStep("fine", 1.0), KitStep("weighty", bad)],
        progress_callback=lambda current, total: calls.append(current),
    )
    with pytest.raises(StepDefinitionError) as info:
        orchestrator.execute()
    assert str(info.value) == f"step 'weighty' has progress_weight {bad!r}; it must be finite and >= 0"
    assert ctx.trail == []
    assert ctx.step_results == []
    assert calls == []


def test_zero_total_weight_raises_before_any_step_runs(make_executor):
    orchestrator, ctx = orchestrate(make_executor, [KitStep("a", 0), KitStep("b", 0)])
    with pytest.raises(StepDefinitionError):
        orchestrator.execute()
    assert ctx.trail == []
    assert ctx.step_results == []


def test_a_duplicate_name_is_rejected_before_anything_runs(make_executor):
    registry = StepRegistry[KitContext]()
    registry.register(KitStep("a"))
    registry.register(KitStep("b"))
    with pytest.raises(StepDefinitionError) as info:
        registry.register(KitStep("a", sets={"dup": True}))
    assert str(info.value) == "a step named 'a' is already registered; step names must be unique"
    ctx = new_ctx()
    Orchestrator(registry, ctx, executor=make_executor()).execute()
    assert executed(ctx) == ["a", "b"]
    assert "dup" not in ctx.values


def test_a_run_with_zero_weight_steps_still_completes(make_executor):
    calls: list[int] = []
    orchestrator, ctx = orchestrate(
        make_executor,
        [KitStep("a", 0), KitStep("b", 1), KitStep("c", 0)],
        progress_callback=lambda current, total: calls.append(current),
    )
    assert orchestrator.execute()["steps_executed"] == 3
    assert executed(ctx) == ["a", "b", "c"]
    assert calls[-1] == 100 and calls.count(100) == 1
    assert orchestrator.progress == 1.0


# --- events, metrics, messages ------------------------------------------------------


def test_events_metrics_and_messages_arrive_in_order(make_executor):
    orchestrator, ctx = orchestrate(make_executor, [Chatty("first"), KitStep("quiet"), Chatty("last")])
    orchestrator.execute()
    got = [(e.kind, e.name, e.step, e.data, e.level) for e in ctx.runtime_ctx.events]
    per_step = [
        [
            ("event", "started", name, {"step": name}, "info"),
            ("metrics", None, name, {"loss": 0.5}, "info"),
            ("message", None, name, {"message": f"{name} halfway"}, "info"),
            ("event", "finished", name, {"step": name}, "debug"),
        ]
        for name in ("first", "last")
    ]
    assert got == per_step[0] + per_step[1]
    assert ctx.runtime_ctx.metrics == {"first": {"loss": 0.5}, "last": {"loss": 0.5}}


def test_subscribers_see_step_events_live(make_executor):
    seen: list[str] = []
    ctx = new_ctx()
    ctx.runtime_ctx.subscribe(lambda e: seen.append(f"{e.kind}:{ctx.current_step}") if e.kind not in ("progress", "step") else None)
    orchestrator, _ = orchestrate(make_executor, [Chatty("first"), Chatty("second")], ctx=ctx)
    orchestrator.execute()
    assert seen == [f"{k}:first" for k in ("event", "metrics", "message", "event")] + [
        f"{k}:second" for k in ("event", "metrics", "message", "event")
    ]


def test_events_logged_by_a_rollback_arrive(make_executor):
    class LogsRollback(KitStep):
        def rollback(self, ctx: KitContext, result: StepResult) -> None:
            ctx.log("undo", {"step": self.name})
            super().rollback(ctx, result)

    orchestrator, ctx = orchestrate(make_executor, [LogsRollback("a"), LogsRollback("b", fail="result")])
    with pytest.raises(StepFailedError):
        orchestrator.execute()
    assert [(e.name, e.data) for e in ctx.runtime_ctx.events] == [("undo", {"step": "b"}), ("undo", {"step": "a"})]
