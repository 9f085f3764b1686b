"""Ray-only behaviour: the context actor's lifetime, remote progress, large values, code shipping."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray

from ray_backend import RayExecutor, RayOrchestrator
from synapse_steps import (
    BaseStep,
    BaseStepContext,
    ContextNotSerializableError,
    Orchestrator,
    RuntimeContext,
    StepFailedError,
    StepResult,
)
from tests.conftest import ray_config
from tests.steps_kit import KitContext, KitStep, context_actors, open_runs, registry_of

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.mark.parametrize("fail", [None, "raise"])
def test_runs_share_one_context_actor_which_keeps_nothing_of_a_finished_run(fail: str | None) -> None:
    executors = [RayExecutor(ray_config()) for _ in range(2)]
    for executor in executors:
        ctx = KitContext(runtime_ctx=RuntimeContext())
        orchestrator = Orchestrator(registry_of(KitStep("a"), KitStep("b", fail=fail)), ctx, executor=executor)
        if fail:
            with pytest.raises(StepFailedError):
                orchestrator.execute()
        else:
            orchestrator.execute()
    first, second = executors
    assert first.actor_name is not None and first.actor_name == second.actor_name
    assert first.run_key is not None and second.run_key is not None and first.run_key != second.run_key
    namespace = ray_config().ray.namespace
    assert [name for name, ns in context_actors() if ns == namespace] == [first.actor_name]  # still up, for the next run
    deadline = time.monotonic() + 10  # the close is not waited for
    while {first.run_key, second.run_key} & set(open_runs()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not {first.run_key, second.run_key} & set(open_runs())


def _alive(name: str | None, namespace: str, within_s: float) -> bool:
    """Whether actor ``name`` is still alive after waiting up to ``within_s`` for it to end."""
    deadline = time.monotonic() + within_s
    while (name, namespace) in context_actors() and time.monotonic() < deadline:
        time.sleep(0.05)
    return (name, namespace) in context_actors()


def test_the_context_actor_waits_actor_idle_s_for_the_next_run_then_ends() -> None:
    namespace = "synapse-steps-idle-test"  # an actor of its own, not the session's
    config = ray_config(namespace=namespace, actor_idle_s=1.5)
    first = RayExecutor(config)
    Orchestrator(registry_of("a"), KitContext(runtime_ctx=RuntimeContext()), executor=first).execute()
    ended = time.monotonic()
    second = RayExecutor(config)
    Orchestrator(registry_of("a"), KitContext(runtime_ctx=RuntimeContext()), executor=second).execute()
    assert second.actor_name == first.actor_name  # the next run found it waiting
    assert _alive(first.actor_name, namespace, within_s=0.5)
    assert not _alive(first.actor_name, namespace, within_s=10)
    assert time.monotonic() - ended > 1.5  # it waited its idle time after the second run


def test_with_actor_idle_s_0_the_context_actor_ends_with_the_run() -> None:
    namespace = "synapse-steps-idle-0-test"
    executor = RayExecutor(ray_config(namespace=namespace, actor_idle_s=0))
    with pytest.raises(StepFailedError):
        Orchestrator(registry_of("a", KitStep("b", fail="raise")), KitContext(runtime_ctx=RuntimeContext()),
                     executor=executor).execute()
    assert not _alive(executor.actor_name, namespace, within_s=5)


class CommitsFirst(BaseStep[KitContext]):
    """Commits its state (through the context actor) before anything else."""

    name = "commits"
    progress_weight = 1.0

    def execute(self, ctx: KitContext) -> StepResult:
        ctx.values["committed"] = True
        ctx.commit()
        return StepResult()


def test_a_context_actor_that_died_between_runs_is_replaced_before_the_next_run_uses_it() -> None:
    """The run that used it last never noticed (its last calls were not waited for)."""
    namespace = "synapse-steps-died-idle-test"
    config = ray_config(namespace=namespace, actor_idle_s=5)
    first = RayExecutor(config)
    Orchestrator(registry_of("a"), KitContext(runtime_ctx=RuntimeContext()), executor=first).execute()
    ray.kill(ray.get_actor(first.actor_name, namespace=namespace), no_restart=True)
    assert not _alive(first.actor_name, namespace, within_s=10)  # the kill has landed: a ping now fails
    second = RayExecutor(config)
    ctx = KitContext(runtime_ctx=RuntimeContext())
    Orchestrator(registry_of(CommitsFirst()), ctx, executor=second).execute()  # its commit reaches a live actor
    assert ctx.values["committed"] and second.actor_name != first.actor_name
    assert [name for name, ns in context_actors() if ns == namespace] == [second.actor_name]


class SlowTicker(BaseStep[KitContext]):
    """Reports half-way, then holds still long enough for the driver to see it."""

    name = "ticker"
    progress_weight = 0.6

    def execute(self, ctx: KitContext) -> StepResult:
        ctx.commit()  # returns once the run's context actor is up (on a loaded machine it starts late)
        for i in range(1, 6):
            ctx.set_progress(i, 10)
        time.sleep(3.0)
        for i in range(6, 11):
            ctx.set_progress(i, 10)
        return StepResult()


@pytest.mark.slow
def test_worker_progress_reaches_the_callback_while_the_step_runs() -> None:
    seen: list[tuple[float, int]] = []
    ctx = KitContext(runtime_ctx=RuntimeContext())
    registry = registry_of(KitStep("load", 0.2), SlowTicker(), KitStep("save", 0.2))
    start = time.monotonic()
    Orchestrator(
        registry, ctx, lambda current, total: seen.append((time.monotonic() - start, current)),
        executor=RayExecutor(ray_config()),
    ).execute()
    values = [v for _, v in seen]
    assert values == sorted(values) and values[-1] == 100
    assert all(20 <= v <= 80 for v in values[1:-1]), values
    halfway = [t for t, v in seen if v == 50]
    assert halfway, f"the driver never saw the step's half-way progress: {seen}"
    at_eighty = next(t for t, v in seen if v == 80)
    # Latency includes the run's context actor starting up (~0.35 s idle, more on a busy machine).
    assert at_eighty - halfway[0] > 1.5, "half-way progress only arrived when the step ended"


class Chatty(BaseStep[KitContext]):
    name = "chatty"
    progress_weight = 1.0

    def execute(self, ctx: KitContext) -> StepResult:
        for i in range(2000):
            ctx.log("tick", {"i": i})
            ctx.set_metrics({"loss": 1.0 / (i + 1)})
        ctx.log_message("done", "success")
        return StepResult()


def test_events_from_a_worker_arrive_in_order_and_complete() -> None:
    ctx = KitContext(runtime_ctx=RuntimeContext())
    Orchestrator(registry_of(Chatty()), ctx, executor=RayExecutor(ray_config())).execute()
    ticks = [e.data["i"] for e in ctx.runtime_ctx.events if e.name == "tick"]
    assert ticks == list(range(2000))
    assert ctx.runtime_ctx.metrics["chatty"] == {"loss": 1.0 / 2000}
    assert ctx.runtime_ctx.events[-1].data == {"message": "done"}


@dataclass
class ArrayContext(BaseStepContext):
    array: Any = None
    seen: list[tuple[str, bool, int]] = field(default_factory=list)


class WriteArray(BaseStep[ArrayContext]):
    name = "write"
    progress_weight = 1.0

    def execute(self, ctx: ArrayContext) -> StepResult:
        ctx.array = np.arange(4_000_000, dtype=np.float64)  # 32 MB
        return StepResult()


class ReadArray(BaseStep[ArrayContext]):
    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    progress_weight = 1.0

    def execute(self, ctx: ArrayContext) -> StepResult:
        ctx.seen.append((self._name, bool(ctx.array.flags.writeable), int(ctx.array[-1])))
        return StepResult()


def test_large_fields_travel_through_the_object_store_untouched() -> None:
    ctx = ArrayContext(runtime_ctx=RuntimeContext())
    executor = RayExecutor(ray_config())
    Orchestrator(registry_of(WriteArray(), ReadArray("r1"), ReadArray("r2")), ctx, executor=executor).execute()
    # Readers got a zero-copy, read-only view from the object store, not a pickled copy.
    assert ctx.seen == [("r1", False, 3_999_999), ("r2", False, 3_999_999)]
    assert isinstance(ctx.array, np.ndarray) and ctx.array.shape == (4_000_000,) and ctx.array[-1] == 3_999_999


@dataclass
class LockedContext(BaseStepContext):
    lock: Any = field(default_factory=threading.Lock)


def test_unpicklable_context_field_is_named_before_any_step_runs() -> None:
    ran: list[str] = []
    ctx = LockedContext(runtime_ctx=RuntimeContext())
    registry = registry_of(KitStep("a"))
    with pytest.raises(ContextNotSerializableError, match=r"context field 'lock'"):
        Orchestrator(registry, ctx, before_step=lambda n, c: ran.append(n), executor=RayExecutor(ray_config())).execute()
    assert ran == [] and ctx.step_results == []


class SocketStep(BaseStep[KitContext]):
    name = "holds-socket"
    progress_weight = 1.0

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()

    def execute(self, ctx: KitContext) -> StepResult:
        return StepResult()


def test_unpicklable_step_is_named_before_any_step_runs() -> None:
    step = SocketStep()
    try:
        with pytest.raises(ContextNotSerializableError, match=r"step 'holds-socket'"):
            Orchestrator(registry_of(KitStep("a"), step), KitContext(runtime_ctx=RuntimeContext()),
                         executor=RayExecutor(ray_config())).execute()
    finally:
        step.sock.close()


def test_ray_orchestrator_has_the_orchestrator_signature_and_result() -> None:
    ctx = KitContext(runtime_ctx=RuntimeContext())
    result = RayOrchestrator(registry_of(KitStep("a"), KitStep("b", skip=True)), ctx).execute()
    assert result == {"success": True, "steps_executed": 1, "steps_total": 2}
    assert [(action, name) for action, name, _ in ctx.trail] == [("execute", "a")]
    assert ctx.trail[0][2] != os.getpid()


OUTSIDE_MODULE = textwrap.dedent(
    """
    from dataclasses import dataclass, field
    from synapse_steps import BaseStep, BaseStepContext, StepResult

    @dataclass
    class OutsideContext(BaseStepContext):
        where: list = field(default_factory=list)

    class OutsideStep(BaseStep[OutsideContext]):
        name = "outside"
        progress_weight = 1.0

        def execute(self, ctx):
            import os
            ctx.where.append(os.getpid())
            return StepResult()
    """
)


def test_steps_from_a_module_workers_cannot_import_still_run(tmp_path: Path) -> None:
    """Exactly the failure a bare Ray task hits: a module imported from outside the project."""
    module_dir = tmp_path / "elsewhere"
    module_dir.mkdir()
    (module_dir / "outside_steps_mod.py").write_text(OUTSIDE_MODULE)
    sys.path.insert(0, str(module_dir))
    try:
        import outside_steps_mod  # type: ignore[import-not-found]

        @ray.remote
        def bare(step: Any) -> str:
            return step.name

        with pytest.raises(Exception, match="outside_steps_mod"):
            ray.get(bare.remote(outside_steps_mod.OutsideStep()), timeout=60)

        ctx = outside_steps_mod.OutsideContext(runtime_ctx=RuntimeContext())
        Orchestrator(registry_of(outside_steps_mod.OutsideStep()), ctx, executor=RayExecutor(ray_config())).execute()
        assert len(ctx.where) == 1 and ctx.where[0] != os.getpid()
    finally:
        sys.path.remove(str(module_dir))
        sys.modules.pop("outside_steps_mod", None)


SCRIPT = textwrap.dedent(
    """
    import os
    from dataclasses import dataclass, field
    from synapse_steps import BaseStep, BaseStepContext, StepRegistry, StepResult, RuntimeContext, Orchestrator

    @dataclass
    class ScriptContext(BaseStepContext):
        pids: list = field(default_factory=list)

    class ScriptStep(BaseStep[ScriptContext]):
        name = "in-main"
        progress_weight = 1.0

        def execute(self, ctx):
            ctx.pids.append(os.getpid())
            return StepResult()

    if __name__ == "__main__":
        registry = StepRegistry()
        registry.register(ScriptStep())
        for _ in range(2):  # the second run starts a new local Ray: the first one's context actor is gone
            ctx = ScriptContext(runtime_ctx=RuntimeContext())
            print(Orchestrator.from_config(registry, ctx).execute())
            import ray
            print("worker-pid-differs", ctx.pids[0] != os.getpid(), "ray-still-up", ray.is_initialized())
    """
)


@pytest.mark.slow
def test_script_run_as_main_on_an_embedded_local_ray(tmp_path: Path) -> None:
    """No address configured: each run starts its own local Ray and stops it afterwards."""
    script = tmp_path / "flow.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "SYNAPSE_STEPS_EXECUTOR": "ray", "SYNAPSE_STEPS_RAY__NUM_CPUS": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("{'success': True, 'steps_executed': 1, 'steps_total': 1}") == 2
    assert proc.stdout.count("worker-pid-differs True ray-still-up False") == 2


@dataclass(slots=True)
class SlottedContext(BaseStepContext):
    count: int = 0


class CountStep(BaseStep[SlottedContext]):
    name = "count"
    progress_weight = 1.0

    def execute(self, ctx: SlottedContext) -> StepResult:
        ctx.count += 1
        return StepResult()


def test_a_slots_dataclass_context_round_trips() -> None:
    ctx = SlottedContext(runtime_ctx=RuntimeContext())
    Orchestrator(registry_of(CountStep()), ctx, executor=RayExecutor(ray_config())).execute()
    assert ctx.count == 1 and len(ctx.step_results) == 1


THREADED_RUNS_SCRIPT = """
import threading, time
from dataclasses import dataclass, field
import ray
from synapse_steps import (BaseStep, BaseStepContext, ExecutorConfig, Orchestrator, RaySettings, RuntimeContext,
                           StepFailedError, StepRegistry, StepResult)

@dataclass
class Ctx(BaseStepContext):
    trail: list = field(default_factory=list)

class Sleep(BaseStep):
    progress_weight = 1.0
    def __init__(self, name, seconds, fail=False):
        self._name, self._seconds, self._fail = name, seconds, fail
    @property
    def name(self):
        return self._name
    def execute(self, ctx):
        ctx.trail.append("execute " + self._name)
        time.sleep(self._seconds)
        if self._fail:
            raise RuntimeError(self._name + " failed")
        return StepResult()
    def rollback(self, ctx, result):
        ctx.trail.append("rollback " + self._name)

outcomes = {}
def run(key, steps):
    registry = StepRegistry()
    for step in steps:
        registry.register(step)
    ctx = Ctx(runtime_ctx=RuntimeContext())
    config = ExecutorConfig(executor="ray", ray=RaySettings(num_cpus=2, progress_interval_s=0.05))
    try:
        Orchestrator.from_config(registry, ctx, config).execute()
        outcomes[key] = ("ok", ctx.trail)
    except StepFailedError as exc:
        outcomes[key] = (str(exc), ctx.trail)
    except BaseException as exc:
        outcomes[key] = (repr(exc), ctx.trail)

short = threading.Thread(target=run, args=("short", [Sleep("a", 0.2)]))
long = threading.Thread(target=run, args=("long", [Sleep("b", 0.2), Sleep("c", 2.5, fail=True)]))
long.start(); time.sleep(0.5); short.start()
short.join(); long.join()
print("OUTCOMES", sorted(outcomes.items()))
print("RAY_LEFT_RUNNING", ray.is_initialized())
"""


@pytest.mark.slow
def test_two_runs_in_threads_share_one_embedded_ray_and_the_last_one_stops_it(tmp_path: Path) -> None:
    """The first run to finish must not shut Ray down under the other (it would abort the driver)."""
    script = tmp_path / "threads.py"
    script.write_text(THREADED_RUNS_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNAPSE_STEPS_")}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "OUTCOMES [('long', (\"Step 'c' failed: c failed\", ['execute b', 'execute c', 'rollback c', 'rollback b'])), "
        "('short', ('ok', ['execute a']))]"
    ) in proc.stdout, proc.stdout + proc.stderr[-3000:]
    assert "RAY_LEFT_RUNNING False" in proc.stdout
