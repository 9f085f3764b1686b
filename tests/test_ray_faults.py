"""Fault injection on one node: every fault ends as a failed step, a completed rollback,
a clear error, within a bounded time, with no context actor left behind.

Each step writes a line to an append-only journal file as well as to ``ctx.trail``:
the trail shows what reached the driver's context (what a user sees), the journal shows
what really ran, including in worker processes that were killed before they could
commit anything (crashes, timeouts, retries).

Rows of the fault table (see the task): 1 exceptions, 2 crashed workers, 3 retries on
chosen exceptions, 4 timeouts, 5 Ctrl-C / SIGTERM on the driver, 6 the context actor
dying, 7 failing rollbacks, 8 unpicklable context or step, 9 bad configuration and
unschedulable steps, 10 concurrent runs, 11 many runs in a row.
"""

from __future__ import annotations

import _thread
import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ray

from ray_backend import RayExecutor
from synapse_steps import (
    BaseStep,
    ConfigError,
    ContextNotSerializableError,
    ExecutorConfig,
    Orchestrator,
    RuntimeContext,
    StepFailedError,
    StepRecord,
    StepResources,
    StepResult,
    UnknownStepError,
    load_config,
)
from tests.conftest import ray_config
from tests.steps_kit import KitContext, KitStep, context_actors, new_ctx, open_runs, registry_of

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.timeout(180)]

NAMESPACE = "synapse-steps"  # RaySettings' default namespace


# --- helpers ----------------------------------------------------------------------


def wait_for_no_new_open_runs(before: Sequence[str], timeout_s: float = 10.0) -> list[str]:
    """Runs whose state the context actor holds now that it did not hold before (after waiting for closes to land)."""
    deadline = time.monotonic() + timeout_s
    while True:
        new = [key for key in open_runs() if key not in before]
        if not new or time.monotonic() > deadline:
            return new
        time.sleep(0.1)


@pytest.fixture(autouse=True)
def no_run_actor_left(ray_session: None) -> Iterator[None]:
    """Every test in this module: whatever happened, no run's state outlives it, and one context actor serves all."""
    before = open_runs()
    yield
    assert wait_for_no_new_open_runs(before) == []
    namespaces = [namespace for _, namespace in context_actors()]
    assert len(namespaces) == len(set(namespaces)), context_actors()  # a replaced actor is gone


@dataclass
class Outcome:
    ctx: KitContext
    error: StepFailedError | None
    elapsed_s: float
    executor: RayExecutor
    records: list[StepRecord]


def run_steps(
    steps: Sequence[BaseStep],
    *,
    ctx: KitContext | None = None,
    config: ExecutorConfig | None = None,
    before_step: Callable[[str, Any], None] | None = None,
    executor: RayExecutor | None = None,
) -> Outcome:
    """Run the steps on Ray; a StepFailedError is returned, anything else propagates."""
    ctx = ctx if ctx is not None else new_ctx()
    executor = executor if executor is not None else RayExecutor(config or ray_config())
    orchestrator = Orchestrator(registry_of(*steps), ctx, before_step=before_step, executor=executor)
    start = time.monotonic()
    try:
        orchestrator.execute()
    except StepFailedError as exc:
        return Outcome(ctx, exc, time.monotonic() - start, executor, orchestrator.records)
    return Outcome(ctx, None, time.monotonic() - start, executor, orchestrator.records)


def trail(ctx: KitContext) -> list[tuple[str, str]]:
    """The (action, step) pairs that reached the caller's context; all ran in workers."""
    assert all(pid != os.getpid() for _, _, pid in ctx.trail), ctx.trail
    return [(action, name) for action, name, _ in ctx.trail]


def read_journal(path: Path) -> list[tuple[str, str, int, float]]:
    """(what, step, pid, unix time) for every line the steps wrote, in write order."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        what, name, pid, when = line.split()
        rows.append((what, name, int(pid), float(when)))
    return rows


def journal_pairs(path: Path) -> list[tuple[str, str]]:
    return [(what, name) for what, name, _, _ in read_journal(path)]


def pid_gone(pid: int, timeout_s: float = 5.0) -> bool:
    """True once ``pid`` no longer runs (a zombie counts as gone)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return False


class FaultStep(BaseStep[KitContext]):
    """A step that fails in a chosen way, in ``execute`` or in ``rollback``.

    ``fault``: None, "raise" (ValueError), "result" (success=False), "exit" (os._exit),
    "sigkill", "exit-first" (os._exit on the first attempt only), "flaky" (raise
    ``exc_type`` on the first ``fail_times`` attempts), "sleep" (time.sleep(60)),
    "stubborn" (a loop that swallows BaseException for 60 s), "kill-actor" (kill the
    run's context actor, then keep working).
    ``rollback_fault``: None, "raise" (OSError), "exit" (os._exit), "kill-actor".
    """

    progress_weight = 1.0

    def __init__(
        self,
        name: str,
        journal: Path,
        *,
        fault: str | None = None,
        rollback_fault: str | None = None,
        resources: StepResources | None = None,
        fail_times: int = 0,
        exc_type: type[Exception] = ConnectionError,
    ) -> None:
        self._name = name
        self._journal = str(journal)
        self._fault = fault
        self._rollback_fault = rollback_fault
        self._resources = resources or StepResources()
        self._fail_times = fail_times
        self._exc_type = exc_type

    @property
    def name(self) -> str:
        return self._name

    @property
    def resources(self) -> StepResources:
        return self._resources

    def _note(self, what: str) -> None:
        """Journal ``what`` for this step (one append: cheap, so a crash right after is a crash at once)."""
        line = f"{what} {self._name} {os.getpid()} {time.time():.6f}\n".encode()
        fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def _attempt(self) -> int:
        """How many times this step's execute has started, this attempt included."""
        return journal_pairs(Path(self._journal)).count(("execute", self._name))

    @staticmethod
    def _kill_context_actor(ctx: KitContext) -> None:
        actor = ray.get_actor(ctx.values["actor_name"], namespace=ctx.values["namespace"])
        ray.kill(actor, no_restart=True)

    def execute(self, ctx: KitContext) -> StepResult:
        self._note("execute")
        ctx.trail.append(("execute", self._name, os.getpid()))
        fault = self._fault
        if fault == "raise":
            raise ValueError(f"{self._name} exploded")
        if fault == "result":
            return StepResult(success=False, error=f"{self._name} said no", rollback_data={"by": self._name})
        if fault == "exit" or (fault == "exit-first" and self._attempt() == 1):
            os._exit(1)
        if fault == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(10)
        if fault == "flaky" and (attempt := self._attempt()) <= self._fail_times:
            raise self._exc_type(f"{self._name} flaked on attempt {attempt}")
        if fault == "sleep":
            time.sleep(60)
            self._note("finished")
        if fault == "stubborn":
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    time.sleep(0.01)
                except BaseException:  # noqa: BLE001 - the point: ignore the polite cancel
                    self._note("swallowed")
            self._note("finished")
        if fault == "kill-actor":
            ctx.values["before_kill"] = True
            self._kill_context_actor(ctx)
            self._note("killed-actor")
            for i in range(1, 11):
                ctx.set_progress(i, 10)
                ctx.log("after-kill", {"i": i})
                time.sleep(0.05)  # long enough for the driver to poll the dead actor mid-step
            ctx.values["after_kill"] = True
        ctx.values.setdefault("executed", []).append(self._name)
        return StepResult(data={"step": self._name}, rollback_data={"undo": self._name})

    def rollback(self, ctx: KitContext, result: StepResult) -> None:
        self._note("rollback")
        ctx.trail.append(("rollback", self._name, os.getpid()))
        ctx.values.setdefault("rollback_results", []).append((self._name, result.success, dict(result.rollback_data)))
        if self._rollback_fault == "raise":
            raise OSError(f"{self._name} rollback broke")
        if self._rollback_fault == "exit":
            os._exit(1)
        if self._rollback_fault == "kill-actor":
            self._kill_context_actor(ctx)
            time.sleep(0.3)


def share_actor_name(executor: RayExecutor) -> Callable[[str, Any], None]:
    """A before_step hook that tells the steps where the run's context actor is."""

    def hook(name: str, ctx: Any) -> None:
        ctx.values["actor_name"] = executor.actor_name
        ctx.values["namespace"] = NAMESPACE

    return hook


# --- 1. execute raises / returns success=False ----------------------------------------


@pytest.mark.parametrize("fault", ["raise", "result"])
def test_failed_step_rolls_back_every_executed_step_in_reverse_including_itself(tmp_path: Path, fault: str) -> None:
    journal = tmp_path / "journal"
    steps = [
        FaultStep("a", journal), FaultStep("b", journal), FaultStep("c", journal, fault=fault), FaultStep("d", journal),
    ]
    out = run_steps(steps)

    assert out.error is not None
    assert trail(out.ctx) == [
        ("execute", "a"), ("execute", "b"), ("execute", "c"),
        ("rollback", "c"), ("rollback", "b"), ("rollback", "a"),
    ]
    assert journal_pairs(journal) == trail(out.ctx)  # nothing ran that the driver did not hear of
    assert out.error.step_name == "c" and out.error.rollback_errors == [] and out.ctx.errors == []
    # Each rollback got its own step's result; the failed step's carries its rollback_data.
    rollbacks = out.ctx.values["rollback_results"]
    assert [name for name, _, _ in rollbacks] == ["c", "b", "a"]
    assert rollbacks[1:] == [("b", True, {"undo": "b"}), ("a", True, {"undo": "a"})]
    assert out.ctx.step_results[-1].success is False
    if fault == "raise":
        assert str(out.error) == "Step 'c' failed: c exploded"
        assert out.error.traceback is not None
        assert "ValueError: c exploded" in out.error.traceback and "in execute" in out.error.traceback
    else:
        assert str(out.error) == "Step 'c' failed: c said no"
        assert rollbacks[0] == ("c", False, {"by": "c"})
    assert out.elapsed_s < 20


# --- 2. the worker process dies mid-step ----------------------------------------------


@pytest.mark.parametrize("fault", ["exit", "sigkill"])
def test_crashed_worker_fails_the_step_once_and_rolls_back_including_it(tmp_path: Path, fault: str) -> None:
    journal = tmp_path / "journal"
    out = run_steps([FaultStep("a", journal), FaultStep("crash", journal, fault=fault), FaultStep("never", journal)])

    assert out.error is not None and out.error.step_name == "crash"
    assert "Step 'crash' failed" in str(out.error)
    assert "worker process running step 'crash' (execute) crashed" in str(out.error)
    # Default resources: no retry. The body ran exactly once, and "never" never ran.
    assert [pair for pair in journal_pairs(journal) if pair[0] == "execute"] == [("execute", "a"), ("execute", "crash")]
    # The crashed attempt never committed, so the driver's trail skips it; its rollback ran.
    assert trail(out.ctx) == [("execute", "a"), ("rollback", "crash"), ("rollback", "a")]
    assert journal_pairs(journal) == [
        ("execute", "a"), ("execute", "crash"), ("rollback", "crash"), ("rollback", "a"),
    ]
    assert out.error.rollback_errors == []
    assert out.elapsed_s < 20


def test_crash_on_the_first_attempt_succeeds_on_retry_when_retries_are_allowed(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    flaky = FaultStep("crash-once", journal, fault="exit-first", resources=StepResources(max_retries=2))
    out = run_steps([FaultStep("a", journal), flaky, FaultStep("b", journal)])

    assert out.error is None
    assert journal_pairs(journal) == [
        ("execute", "a"), ("execute", "crash-once"), ("execute", "crash-once"), ("execute", "b"),
    ]
    assert trail(out.ctx) == [("execute", "a"), ("execute", "crash-once"), ("execute", "b")]
    attempts = [pid for what, name, pid, _ in read_journal(journal) if name == "crash-once"]
    assert attempts[0] != attempts[1], "the retry must run in a new worker process"


# --- 3. retries on chosen exceptions -----------------------------------------------------

RETRY_CONNECTION_ERRORS = StepResources(max_retries=3, retry_exceptions=(ConnectionError,))


@pytest.mark.slow
def test_flaky_step_raising_a_retryable_exception_completes_on_the_third_attempt(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    flaky = FaultStep("flaky", journal, fault="flaky", fail_times=2, resources=RETRY_CONNECTION_ERRORS)
    out = run_steps([FaultStep("a", journal), flaky])

    assert out.error is None
    assert journal_pairs(journal).count(("execute", "flaky")) == 3
    assert trail(out.ctx) == [("execute", "a"), ("execute", "flaky")]
    assert out.ctx.step_results[-1].success and out.ctx.step_results[-1].data == {"step": "flaky"}


def test_exception_not_listed_for_retry_fails_at_once(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    flaky = FaultStep(
        "flaky", journal, fault="flaky", fail_times=5, exc_type=ValueError, resources=RETRY_CONNECTION_ERRORS
    )
    out = run_steps([FaultStep("a", journal), flaky])

    assert out.error is not None
    assert str(out.error) == "Step 'flaky' failed: flaky flaked on attempt 1"
    assert journal_pairs(journal).count(("execute", "flaky")) == 1
    assert trail(out.ctx) == [("execute", "a"), ("execute", "flaky"), ("rollback", "flaky"), ("rollback", "a")]
    assert out.error.traceback is not None and "ValueError" in out.error.traceback


@pytest.mark.slow
def test_retryable_exception_that_never_stops_fails_after_the_last_retry(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    flaky = FaultStep("flaky", journal, fault="flaky", fail_times=99, resources=RETRY_CONNECTION_ERRORS)
    out = run_steps([FaultStep("a", journal), flaky])

    assert out.error is not None and out.error.step_name == "flaky"
    assert "Step 'flaky' failed" in str(out.error) and "flaky flaked on attempt 4" in str(out.error)
    assert journal_pairs(journal).count(("execute", "flaky")) == 4  # 1 + max_retries
    assert journal_pairs(journal)[-2:] == [("rollback", "flaky"), ("rollback", "a")]
    assert trail(out.ctx)[-2:] == [("rollback", "flaky"), ("rollback", "a")]
    assert out.error.traceback is not None and "ConnectionError" in out.error.traceback


# --- 4. time limits -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["sleep", "stubborn"])
def test_step_over_its_time_limit_is_stopped_and_rolled_back(tmp_path: Path, fault: str) -> None:
    journal = tmp_path / "journal"
    slow = FaultStep("slow", journal, fault=fault, resources=StepResources(timeout_s=2))
    out = run_steps([FaultStep("a", journal), slow, FaultStep("never", journal)])

    assert out.error is not None and out.error.step_name == "slow"
    assert "Step 'slow' failed" in str(out.error) and "timed out after 2s" in str(out.error)
    # limit + grace + a new worker for the rollback, with room for a loaded CI machine: it ends, it does not hang
    assert out.elapsed_s < 2 + 18, f"the run took {out.elapsed_s:.1f}s"
    # The rollback saw what the stopped step had done (its trail entry streamed to the actor).
    assert trail(out.ctx) == [("execute", "a"), ("execute", "slow"), ("rollback", "slow"), ("rollback", "a")]
    pairs = journal_pairs(journal)
    assert ("finished", "slow") not in pairs and ("execute", "never") not in pairs
    assert pairs[-2:] == [("rollback", "slow"), ("rollback", "a")]
    slow_pid = next(pid for what, name, pid, _ in read_journal(journal) if (what, name) == ("execute", "slow"))
    if fault == "stubborn":
        assert ("swallowed", "slow") in pairs, "the polite cancel should have reached the step"
        assert pid_gone(slow_pid), "a step that ignores the polite cancel must be killed"


# --- 5. Ctrl-C and SIGTERM on the driver -------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_in_the_driver_stops_the_running_step_and_rolls_back(tmp_path: Path) -> None:
    """In-process Ctrl-C (``_thread.interrupt_main``) while a step sleeps on a worker."""
    journal = tmp_path / "journal"
    steps = [FaultStep("first", journal), FaultStep("long", journal, fault="sleep"), FaultStep("never", journal)]
    fired: list[float] = []

    def interrupt_when_long_starts() -> None:
        deadline = time.monotonic() + 30
        while ("execute", "long") not in journal_pairs(journal) and time.monotonic() < deadline:
            time.sleep(0.05)
        fired.append(time.monotonic())
        _thread.interrupt_main()

    ctx = new_ctx()
    watcher = threading.Thread(target=interrupt_when_long_starts, daemon=True)
    watcher.start()
    with pytest.raises(KeyboardInterrupt):
        Orchestrator(registry_of(*steps), ctx, executor=RayExecutor(ray_config())).execute()
    ended = time.monotonic()
    watcher.join(timeout=5)
    assert fired and ended - fired[0] < 10
    assert trail(ctx) == [("execute", "first"), ("execute", "long"), ("rollback", "long"), ("rollback", "first")]
    assert ctx.step_results[-1].error == "interrupted while the step was running (received signal SIGINT)"
    pairs = journal_pairs(journal)
    assert ("finished", "long") not in pairs and ("execute", "never") not in pairs
    long_pid = next(pid for what, name, pid, _ in read_journal(journal) if (what, name) == ("execute", "long"))
    assert pid_gone(long_pid), "the interrupted step's worker still runs"


DRIVER_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from dataclasses import dataclass, field

    from synapse_steps import BaseStep, BaseStepContext, Orchestrator, RuntimeContext, StepRegistry, StepResult

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    MARKERS, MODE = sys.argv[1], sys.argv[2]


    def mark(name):
        with open(os.path.join(MARKERS, name), "w") as f:
            f.write(str(os.getpid()))


    @dataclass
    class Ctx(BaseStepContext):
        trail: list = field(default_factory=list)


    class Step(BaseStep):
        progress_weight = 1.0

        def __init__(self, name, sleep_s=0.0):
            self._name, self._sleep_s = name, sleep_s

        @property
        def name(self):
            return self._name

        def execute(self, ctx):
            mark("started-" + self._name)
            ctx.trail.append("execute " + self._name)
            time.sleep(self._sleep_s)
            mark("finished-" + self._name)
            return StepResult()

        def rollback(self, ctx, result):
            ctx.trail.append("rollback " + self._name)
            mark("rollback-" + self._name)


    def open_runs():
        import ray

        if not ray.is_initialized():
            return None
        deadline = time.monotonic() + 5
        while True:
            keys = []
            for actor in ray.util.list_named_actors(all_namespaces=True):
                if actor["name"].startswith("synapse-steps-context-"):
                    handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
                    keys += ray.get(handle.open_runs.remote(), timeout=10)
            if not keys or time.monotonic() > deadline:
                return keys
            time.sleep(0.1)


    def ray_children():
        deadline = time.monotonic() + 5
        while True:
            kids = []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == os.getpid() and fields[0] != "Z":
                    kids.append(int(pid))
            if not kids or time.monotonic() > deadline:
                return kids
            time.sleep(0.1)


    if __name__ == "__main__":
        if MODE == "attached":
            import ray
            ray.init(address="local", num_cpus=int(os.environ["SYNAPSE_STEPS_RAY__NUM_CPUS"]),
                     include_dashboard=False, logging_level="ERROR")
        registry = StepRegistry()
        for step in (Step("first"), Step("long", sleep_s=60), Step("never")):
            registry.register(step)
        ctx = Ctx(runtime_ctx=RuntimeContext())
        try:
            Orchestrator.from_config(registry, ctx).execute()
            print("OUTCOME success", flush=True)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            print("OUTCOME", type(exc).__name__, repr(str(exc)), flush=True)
            raise
        finally:
            print("TRAIL", ctx.trail, flush=True)
            print("OPEN_RUNS", open_runs(), flush=True)
            if MODE == "embedded":
                print("RAY_CHILDREN_LEFT", ray_children(), flush=True)
    """
)


def _stop_process_group(proc: subprocess.Popen[str]) -> None:
    """Clean up after a failed test: the driver and what it started (its own session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["embedded", "attached"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_to_a_driver_script_rolls_back_and_exits(tmp_path: Path, sig: signal.Signals, mode: str) -> None:
    """``embedded``: the executor starts (and stops) Ray; ``attached``: the script's own ray.init."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER_SCRIPT)
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {**os.environ, "SYNAPSE_STEPS_EXECUTOR": "ray", "SYNAPSE_STEPS_RAY__NUM_CPUS": "2"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(markers), mode], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (markers / "started-long").exists():
            assert proc.poll() is None, proc.communicate(timeout=10)[0][-3000:]
            assert time.monotonic() < deadline, "the long step never started"
            time.sleep(0.05)
        time.sleep(0.3)  # let the driver settle in its wait loop
        long_pid = int((markers / "started-long").read_text())
        sent = time.monotonic()
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        _stop_process_group(proc)

    tail = output[-4000:]
    assert proc.returncode != 0, tail
    assert took < 20, f"the driver took {took:.1f}s to exit\n{tail}"
    assert "OUTCOME KeyboardInterrupt" in output, tail
    assert f"OUTCOME KeyboardInterrupt 'received signal {sig.name}'" in output, tail
    # The rollback saw the interrupted step's own change: its state streamed to the context actor.
    assert "TRAIL ['execute first', 'execute long', 'rollback long', 'rollback first']" in output, tail
    assert (markers / "rollback-first").exists() and (markers / "rollback-long").exists(), tail
    assert not (markers / "finished-long").exists() and not (markers / "started-never").exists()
    assert pid_gone(long_pid), "the running step's worker outlived the driver"
    if mode == "attached":
        assert "OPEN_RUNS []" in output, tail  # the context actor (the script's, shared) holds no run
    else:
        assert "OPEN_RUNS None" in output, tail  # Ray it started is stopped...
        assert "RAY_CHILDREN_LEFT []" in output, tail  # ...and none of its processes remain


# --- 6. the context actor dies mid-run -------------------------------------------------------


def test_context_actor_killed_by_the_driver_between_steps_the_run_recovers(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    executor = RayExecutor(ray_config())
    killed: list[str] = []

    def kill_before_b(name: str, ctx: Any) -> None:
        if name == "b":
            killed.append(executor.actor_name or "")
            ray.kill(ray.get_actor(executor.actor_name, namespace=NAMESPACE), no_restart=True)

    steps = [FaultStep("a", journal), KitStep("b", ticks=5, sets={"b": 1}), FaultStep("c", journal)]
    out = run_steps(steps, before_step=kill_before_b, executor=executor)

    assert out.error is None, out.error
    assert out.elapsed_s < 20
    assert [(action, name) for action, name, _ in out.ctx.trail] == [
        ("execute", "a"), ("execute", "b"), ("execute", "c"),
    ]
    assert out.ctx.values["b"] == 1 and out.ctx.values["executed"] == ["a", "c"]
    assert out.ctx.runtime_ctx.progress["b"] == (5, 5)
    assert killed and killed[0] not in [name for name, _ in context_actors()]


def test_context_actor_killed_from_inside_a_step_the_run_recovers(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    executor = RayExecutor(ray_config())
    steps = [FaultStep("a", journal), FaultStep("killer", journal, fault="kill-actor"), FaultStep("c", journal)]
    out = run_steps(steps, before_step=share_actor_name(executor), executor=executor)

    assert ("killed-actor", "killer") in journal_pairs(journal)
    assert out.error is None, out.error
    assert out.elapsed_s < 20
    assert trail(out.ctx) == [("execute", "a"), ("execute", "killer"), ("execute", "c")]
    # "c" ran on the context "killer" committed, written partly after the kill.
    assert out.ctx.values["before_kill"] and out.ctx.values["after_kill"]
    assert out.ctx.values["executed"] == ["a", "killer", "c"]
    # Known, documented loss: batches the step flushed to the dead actor are gone (progress
    # and events sent after the kill); only what was still buffered arrives with the result.


def test_context_actor_killed_then_a_step_fails_rollback_completes(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    executor = RayExecutor(ray_config())
    steps = [
        FaultStep("a", journal),
        FaultStep("killer", journal, fault="kill-actor"),
        FaultStep("b", journal, rollback_fault="kill-actor"),  # and once more during the rollback
        FaultStep("boom", journal, fault="raise"),
    ]
    out = run_steps(steps, before_step=share_actor_name(executor), executor=executor)

    assert out.error is not None and str(out.error) == "Step 'boom' failed: boom exploded"
    assert out.elapsed_s < 20
    assert trail(out.ctx)[-4:] == [("rollback", "boom"), ("rollback", "b"), ("rollback", "killer"), ("rollback", "a")]
    assert out.error.rollback_errors == []


# --- 7. a rollback fails ---------------------------------------------------------------------


def test_failing_and_crashing_rollbacks_are_recorded_and_the_rest_still_run(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    steps = [
        FaultStep("a", journal, rollback_fault="raise"),
        FaultStep("b", journal, rollback_fault="exit"),
        FaultStep("c", journal),
        FaultStep("d", journal, fault="raise"),
    ]
    out = run_steps(steps)

    assert out.error is not None and out.error.step_name == "d"
    # What really ran, in order, including the rollback whose worker crashed.
    assert journal_pairs(journal)[4:] == [("rollback", "d"), ("rollback", "c"), ("rollback", "b"), ("rollback", "a")]
    # The crashed rollback could not commit; the raising one did, before it raised.
    assert trail(out.ctx)[4:] == [("rollback", "d"), ("rollback", "c"), ("rollback", "a")]
    assert len(out.error.rollback_errors) == 2
    crashed, raised = out.error.rollback_errors
    assert crashed.startswith("Rollback failed for step 'b': ") and "crashed" in crashed
    assert raised == "Rollback failed for step 'a': a rollback broke"  # the same text as in-process
    assert out.ctx.errors == out.error.rollback_errors
    assert str(out.error) == "Step 'd' failed: d exploded"  # the seed's message: details are attributes
    crashed_exc, raised_exc = out.error.rollback_exceptions
    assert type(raised_exc) is OSError and str(raised_exc) == "a rollback broke"
    assert "OSError: a rollback broke" in str(raised_exc.__cause__), "the worker's traceback travels as the cause"
    assert "crashed" in str(crashed_exc)
    assert out.elapsed_s < 20


# --- 8. a context field or a step that cannot be pickled ----------------------------------------


@dataclass
class HandleContext(KitContext):
    handle: Any = None


def _assert_rejected_before_any_step(ctx: KitContext, steps: Sequence[BaseStep], match: str) -> None:
    hook_calls: list[str] = []
    with pytest.raises(ContextNotSerializableError, match=match):
        Orchestrator(
            registry_of(*steps), ctx, before_step=lambda n, c: hook_calls.append(n), executor=RayExecutor(ray_config())
        ).execute()
    assert hook_calls == [] and ctx.step_results == [] and ctx.trail == []


@pytest.mark.parametrize(
    "make_handle, kind",
    [
        (threading.Lock, "lock"),
        (socket.socket, "socket"),
        (lambda path: open(path, "w"), "file-w"),  # noqa: SIM115 - closed below
        (lambda path: open(path, "rb"), "file-rb"),  # noqa: SIM115
        (lambda path: open(path), "file-r"),  # noqa: SIM115
    ],
    ids=["lock", "socket", "file-w", "file-rb", "file-r"],
)
def test_unpicklable_context_field_is_named_before_the_first_step(tmp_path: Path, make_handle: Any, kind: str) -> None:
    journal = tmp_path / "journal"
    target = tmp_path / "data.txt"
    target.write_text("data")
    handle = make_handle(target) if kind.startswith("file") else make_handle()
    try:
        ctx = HandleContext(runtime_ctx=RuntimeContext(), handle=handle)
        _assert_rejected_before_any_step(ctx, [FaultStep("a", journal)], r"context field 'handle'")
    finally:
        if hasattr(handle, "close"):
            handle.close()
    assert not journal.exists()


def test_open_text_file_in_the_context_is_not_silently_replaced_by_a_copy(tmp_path: Path) -> None:
    """cloudpickle pickles a text file opened for reading as an ``io.StringIO`` of its contents.

    Either the preflight rejects it (as it does for other modes), or the caller's field
    must stay the file it put there; a run must not swap it for a detached copy.
    """
    target = tmp_path / "data.txt"
    target.write_text("data")
    with open(target) as handle:
        ctx = HandleContext(runtime_ctx=RuntimeContext(), handle=handle)
        try:
            run_steps([KitStep("a")], ctx=ctx)
        except ContextNotSerializableError:
            return
        assert ctx.handle is handle, f"the context's open file became {type(ctx.handle).__name__}"
        assert not isinstance(ctx.handle, io.StringIO)


class HoldsHandle(FaultStep):
    def __init__(self, name: str, journal: Path, handle: Any) -> None:
        super().__init__(name, journal)
        self.handle = handle


@pytest.mark.parametrize("kind", ["lock", "socket", "file"])
def test_unpicklable_step_is_named_before_the_first_step(tmp_path: Path, kind: str) -> None:
    journal = tmp_path / "journal"
    handle: Any = {"lock": threading.Lock, "socket": socket.socket, "file": lambda: open(tmp_path / "out", "w")}[kind]()  # noqa: SIM115 - held open across the run
    try:
        steps = [FaultStep("a", journal), HoldsHandle("holder", journal, handle)]
        _assert_rejected_before_any_step(new_ctx(), steps, r"step 'holder' \(HoldsHandle\)")
    finally:
        if hasattr(handle, "close"):
            handle.close()
    assert not journal.exists()


# --- 9. bad configuration, and steps no node can run ---------------------------------------------


def test_unknown_executor_is_a_config_error_naming_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"executor: Input should be 'local' or 'ray'"):
        load_config(executor="nope")
    monkeypatch.setenv("SYNAPSE_STEPS_EXECUTOR", "nope")
    journal = tmp_path / "journal"
    with pytest.raises(ConfigError, match=r"executor"):
        Orchestrator.from_config(registry_of(FaultStep("a", journal)), new_ctx()).execute()
    assert not journal.exists()


@pytest.mark.parametrize(
    "settings, field_path",
    [({"defaults": {"num_gpus": -1}}, "defaults.num_gpus"), ({"steps": {"a": {"num_gpus": -1}}}, "steps.a.num_gpus")],
)
def test_negative_num_gpus_is_a_config_error_naming_the_field(settings: dict[str, Any], field_path: str) -> None:
    with pytest.raises(ConfigError, match=rf"{field_path}: Input should be greater than or equal to 0"):
        load_config(executor="ray", **settings)


def test_negative_num_gpus_declared_on_a_step_names_the_field() -> None:
    with pytest.raises(ValueError) as info:
        StepResources(num_gpus=-1)
    assert str(info.value) == "invalid StepResources: num_gpus: Input should be greater than or equal to 0"


def test_override_for_an_unknown_step_fails_before_any_step_runs(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    config = ExecutorConfig(executor="ray", ray={"progress_interval_s": 0.05}, steps={"trian": {"num_gpus": 1}})
    with pytest.raises(UnknownStepError, match=r"\['trian'\].*registered: \['a', 'train'\]"):
        Orchestrator.from_config(registry_of(FaultStep("a", journal), FaultStep("train", journal)), new_ctx(), config).execute()
    hook_calls: list[str] = []
    ctx = new_ctx()
    with pytest.raises(UnknownStepError, match=r"'trian'"):
        Orchestrator(
            registry_of(FaultStep("a", journal), FaultStep("train", journal)), ctx,
            before_step=lambda n, c: hook_calls.append(n), executor=RayExecutor(config),
        ).execute()
    assert hook_calls == [] and not journal.exists()


@pytest.mark.parametrize(
    "resources, named",
    [(StepResources(resources={"nope": 1}), "nope=1"), (StepResources(num_gpus=2), "num_gpus=2")],
    ids=["custom-resource", "two-gpus"],
)
@pytest.mark.slow
def test_step_no_node_can_run_fails_within_the_schedule_timeout(
    tmp_path: Path, resources: StepResources, named: str
) -> None:
    journal = tmp_path / "journal"
    if named == "num_gpus=2" and ray.cluster_resources().get("GPU", 0) >= 2:
        pytest.skip("this machine has two GPUs")
    steps = [FaultStep("a", journal), FaultStep("greedy", journal, resources=resources), FaultStep("never", journal)]
    out = run_steps(steps, config=ray_config(schedule_timeout_s=2))

    assert out.error is not None and out.error.step_name == "greedy"
    assert "could not start within 2s" in str(out.error) and named in str(out.error)
    assert out.elapsed_s < 2 + 5, f"the run took {out.elapsed_s:.1f}s: {out.error}"
    assert journal_pairs(journal) == [("execute", "a"), ("rollback", "a")]
    # Truthful records: the queued step never ran, so its rollback was not needed (not "done").
    assert [(r.name, r.status, r.rollback) for r in out.records] == [
        ("a", "succeeded", "done"), ("greedy", "failed", "not needed"), ("never", "pending", None)
    ]
    # The step never started, so there is nothing of it to undo: no second wait, no rollback error.
    assert out.error.rollback_errors == [], out.error.rollback_errors


# --- 10. concurrent runs on one cluster ---------------------------------------------------------------


def execute_into(
    results: dict[str, tuple[KitContext, BaseException | None]], run: str, orchestrator: Orchestrator, ctx: KitContext
) -> None:
    """A run's thread body: execute, then ``results[run]`` is its context and what it raised (None: nothing)."""
    try:
        orchestrator.execute()
        results[run] = (ctx, None)
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        results[run] = (ctx, exc)


class TaggedStep(BaseStep[KitContext]):
    """Reports events, metrics and progress tagged with the run id it finds in the context."""

    progress_weight = 1.0

    def __init__(self, name: str, *, fail: bool = False) -> None:
        self._name, self._fail = name, fail

    @property
    def name(self) -> str:
        return self._name

    def execute(self, ctx: KitContext) -> StepResult:
        run = ctx.values["run"]
        for i in range(1, 21):
            ctx.log("tick", {"run": run, "step": self._name, "i": i})
            ctx.set_metrics({"run": run, "i": i})
            ctx.set_progress(i, 20)
            time.sleep(0.01)
        ctx.trail.append(("execute", self._name, os.getpid()))
        ctx.values.setdefault("seen", []).append((self._name, run))
        if self._fail:
            raise RuntimeError(f"{run} failed on purpose")
        return StepResult(data={"run": run})

    def rollback(self, ctx: KitContext, result: StepResult) -> None:
        ctx.trail.append(("rollback", self._name, os.getpid()))
        ctx.values.setdefault("undone", []).append((self._name, ctx.values["run"]))


@pytest.mark.slow
def test_four_concurrent_runs_never_mix_events_progress_or_state() -> None:
    runs = [f"run{i}" for i in range(4)]
    step_names = ["load", "work", "save"]
    results: dict[str, Any] = {}
    progress: dict[str, list[int]] = {run: [] for run in runs}
    executors: dict[str, RayExecutor] = {}
    barrier = threading.Barrier(len(runs))

    def one_run(run: str) -> None:
        ctx = KitContext(runtime_ctx=RuntimeContext(job_id=run), values={"run": run})
        steps = [TaggedStep(n, fail=(run == "run3" and n == "save")) for n in step_names]
        executors[run] = RayExecutor(ray_config())
        orchestrator = Orchestrator(
            registry_of(*steps), ctx, lambda current, total: progress[run].append(current), executor=executors[run]
        )
        barrier.wait(timeout=30)
        execute_into(results, run, orchestrator, ctx)

    threads = [threading.Thread(target=one_run, args=(run,), daemon=True) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads), "a concurrent run hung"

    for run in runs:
        ctx, error = results[run]
        ticks = [e for e in ctx.runtime_ctx.events if e.name == "tick"]
        assert {e.data["run"] for e in ticks} == {run}
        assert [(e.data["step"], e.data["i"]) for e in ticks] == [(n, i) for n in step_names for i in range(1, 21)]
        assert {step: m["run"] for step, m in ctx.runtime_ctx.metrics.items()} == dict.fromkeys(step_names, run)
        assert ctx.values["run"] == run and ctx.values["seen"] == [(n, run) for n in step_names]
        assert ctx.runtime_ctx.job_id == run
        assert progress[run] == sorted(progress[run])
        if run == "run3":
            assert isinstance(error, StepFailedError) and str(error) == "Step 'save' failed: run3 failed on purpose"
            assert ctx.values["undone"] == [("save", run), ("work", run), ("load", run)]
        else:
            assert error is None, error
            assert progress[run][-1] == 100 and "undone" not in ctx.values
    keys = [executors[run].run_key or "" for run in runs]
    assert len(set(keys)) == len(runs) and all(f"-{run}-" in keys[i] for i, run in enumerate(runs))
    assert len({executors[run].actor_name for run in runs}) == 1  # kept apart in one context actor


class Streams(BaseStep[KitContext]):
    """Changes its run's state every 50 ms for ``seconds``, once every run's step is running (marker files)."""

    progress_weight = 1.0

    def __init__(self, name: str, markers: Path, runs: int, seconds: float = 0.0) -> None:
        self._name, self.markers, self.runs, self.seconds = name, markers, runs, seconds

    @property
    def name(self) -> str:
        return self._name

    def execute(self, ctx: KitContext) -> StepResult:
        run = ctx.values["run"]
        ctx.values.setdefault("seen", []).append((self._name, ctx.values.get("last")))
        if self.seconds:
            (self.markers / f"{run}-running").touch()
            deadline = time.monotonic() + 30
            while len(list(self.markers.glob("*-running"))) < self.runs and time.monotonic() < deadline:
                time.sleep(0.02)
            end, i = time.monotonic() + self.seconds, 0
            while time.monotonic() < end:
                i += 1
                ctx.values["count"] = i
                ctx.log("tick", {"run": run, "i": i})
                time.sleep(0.05)
        ctx.values["last"] = f"{run}:{self._name}"
        return StepResult(data={"run": run})


@pytest.mark.slow
def test_concurrent_runs_all_recover_when_their_shared_context_actor_dies_mid_step(tmp_path: Path) -> None:
    """Three runs share the driver's context actor; it is killed while all three steps run.

    Each run replaces it or finds the replacement (one new actor, not three), gives it
    its own committed state, and finishes with its own state only.
    """
    runs = ["r0", "r1", "r2"]
    results: dict[str, tuple[KitContext, BaseException | None]] = {}
    executors = {run: RayExecutor(ray_config(actor_idle_s=30)) for run in runs}  # still up for the checks below
    killed: list[str] = []

    def one_run(run: str) -> None:
        ctx = KitContext(runtime_ctx=RuntimeContext(job_id=run), values={"run": run})
        steps = [Streams("before", tmp_path, 3), Streams("long", tmp_path, 3, seconds=2.0), Streams("after", tmp_path, 3)]
        execute_into(results, run, Orchestrator(registry_of(*steps), ctx, executor=executors[run]), ctx)

    threads = [threading.Thread(target=one_run, args=(run,), daemon=True) for run in runs]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("*-running"))) < len(runs):
        assert time.monotonic() < deadline, "the three long steps never ran together"
        time.sleep(0.02)
    time.sleep(0.5)  # each has shipped state to the actor
    names = {executors[run].actor_name for run in runs}
    assert len(names) == 1, names
    killed.append(names.pop() or "")
    ray.kill(ray.get_actor(killed[0], namespace=NAMESPACE), no_restart=True)
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads), "a run hung after its context actor died"

    for run in runs:
        ctx, error = results[run]
        assert error is None, (run, error)
        assert ctx.values["seen"] == [("before", None), ("long", f"{run}:before"), ("after", f"{run}:long")]
        assert ctx.values["run"] == run and ctx.values["count"] >= 30
        assert {e.data["run"] for e in ctx.runtime_ctx.events if e.name == "tick"} <= {run}
    after = {executors[run].actor_name for run in runs}
    assert len(after) == 1 and killed[0] not in after  # one replacement, shared again
    assert [name for name, namespace in context_actors() if namespace == NAMESPACE] == sorted(after)


class CommitsNow(BaseStep[KitContext]):
    """Commits at once: that needs a live context actor."""

    progress_weight = 1.0
    name = "commits"

    def execute(self, ctx: KitContext) -> StepResult:
        ctx.values["committed"] = True
        ctx.commit()
        return StepResult()


def test_a_run_between_steps_moves_to_the_context_actor_another_run_replaced(tmp_path: Path) -> None:
    """Run B is between steps when the shared actor dies; run A notices and replaces it.

    B's next step must get the new actor (its ``ctx.commit()`` needs a live one), though B
    itself never called the dead one.
    """
    executors = {run: RayExecutor(ray_config(actor_idle_s=30)) for run in ("A", "B")}
    done: dict[str, tuple[KitContext, BaseException | None]] = {}
    killed: list[str] = []

    def run_a() -> None:
        ctx = KitContext(runtime_ctx=RuntimeContext(job_id="A"), values={"run": "A"})
        execute_into(done, "A", Orchestrator(registry_of(Streams("long", tmp_path, 1, seconds=3.0)), ctx,
                                             executor=executors["A"]), ctx)

    def kill_while_a_streams(name: str, ctx: Any) -> None:
        if name != "commits":
            return
        deadline = time.monotonic() + 30
        while not (tmp_path / "A-running").exists():
            assert time.monotonic() < deadline, "A's step never started"
            time.sleep(0.02)
        killed.append(executors["B"].actor_name or "")
        ray.kill(ray.get_actor(killed[0], namespace=NAMESPACE), no_restart=True)
        while executors["A"].actor_name == killed[0]:
            assert time.monotonic() < deadline, "A never replaced the dead actor"
            time.sleep(0.02)

    thread = threading.Thread(target=run_a, daemon=True)
    thread.start()
    ctx = KitContext(runtime_ctx=RuntimeContext(job_id="B"), values={"run": "B"})
    Orchestrator(registry_of("first", CommitsNow()), ctx, before_step=kill_while_a_streams,
                 executor=executors["B"]).execute()
    thread.join(timeout=60)
    assert done["A"][1] is None, done["A"][1]
    assert ctx.values["committed"] and executors["B"].actor_name == executors["A"].actor_name != killed[0]


# --- 11. many runs in a row ------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _ray_worker_processes() -> int:
    """Live ``default_worker.py`` processes descending from this driver (its raylet's workers)."""
    parent: dict[int, int] = {}
    cmdline: dict[int, str] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                cmdline[int(entry)] = cmd.read().replace(b"\0", b" ").decode(errors="replace")
            parent[int(entry)] = int(fields[1])
        except OSError:
            continue

    def descends(pid: int) -> bool:
        for _ in range(6):
            pid = parent.get(pid, 0)
            if pid == os.getpid():
                return True
            if pid <= 1:
                return False
        return False

    return sum(1 for pid, cmd in cmdline.items() if "default_worker.py" in cmd and descends(pid))


def _context_actor_rss_mb() -> float:
    """Resident memory of the driver's context actor (default namespace)."""
    [(name, namespace)] = [actor for actor in context_actors() if actor[1] == NAMESPACE]
    pid = ray.get(ray.get_actor(name, namespace=namespace).__ray_call__.remote(lambda host: os.getpid()), timeout=30)
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_hundred_runs_in_a_row_half_failing_leak_nothing() -> None:
    if not _ray_worker_processes():
        pytest.skip("the session Ray was not started by this process; cannot count its workers")
    samples: dict[int, tuple[float, int, float]] = {}
    total = 100
    for i in range(1, total + 1):
        fail = i % 2 == 0
        ctx = new_ctx(f"many{i}")
        steps = [KitStep("a", ticks=3), KitStep("b", fail="raise" if fail else None)]
        try:
            Orchestrator(registry_of(*steps), ctx, executor=RayExecutor(ray_config())).execute()
            assert not fail
        except StepFailedError as exc:
            assert fail and str(exc) == "Step 'b' failed: b exploded"
            assert [(a, n) for a, n, _ in ctx.trail][-2:] == [("rollback", "b"), ("rollback", "a")]
        if i in (10, total):
            assert wait_for_no_new_open_runs([]) == []
            samples[i] = (_rss_mb(), _ray_worker_processes(), _context_actor_rss_mb())
    (rss_10, workers_10, actor_10), (rss_end, workers_end, actor_end) = samples[10], samples[total]
    assert rss_end - rss_10 < 50, f"driver RSS grew {rss_end - rss_10:.1f} MB between run 10 and run {total}"
    assert actor_end - actor_10 < 20, f"context actor RSS grew {actor_end - actor_10:.1f} MB between run 10 and run {total}"
    assert workers_end <= workers_10 + 2, f"Ray workers grew from {workers_10} to {workers_end}"
    assert len([actor for actor in context_actors() if actor[1] == NAMESPACE]) == 1  # the same one throughout
