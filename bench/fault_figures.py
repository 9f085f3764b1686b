"""Fault figures: for each kind of fault, the time from the fault to the error at the
driver, and how many rollbacks completed out of those expected.

Standalone: starts its own local Ray (2 CPUs) for the single-node faults, then a small
multi-node ``Cluster`` for the lost-node rows, and shuts both down. Prints a Markdown
table. Run: ``python bench/fault_figures.py`` (about 1-2 minutes).

How each figure is taken: steps append ``(event, step, unix time)`` lines to a journal
file, so a fault inside a worker has a timestamp even when the worker dies. The fault
time is the journal line written just before the fault (raise, exit, kill), the moment
the time limit ran out (timeouts), the moment the driver was interrupted (Ctrl-C), the
moment the step was submitted (unschedulable), or the moment the node was removed. The
error time is when ``Orchestrator.execute`` raised in the driver. A rollback counts as
completed when its body ran to the end; expected rollbacks are the steps that started.
"Rollback saw the step's latest state": every step records in its context that it
started working (and, for crashes, waits 0.5 s — several progress intervals — so
the state can stream); each rollback that runs checks that its own step's record is in
the context it got.
"""

from __future__ import annotations

import _thread
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from ray_backend import RayExecutor
from synapse_steps import (
    BaseStep,
    BaseStepContext,
    ExecutorConfig,
    Orchestrator,
    RaySettings,
    RuntimeContext,
    StepRegistry,
    StepResources,
    StepResult,
)

NAMESPACE = "synapse-steps"
FAST_NODE_DEATH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


@dataclass
class BenchContext(BaseStepContext):
    values: dict[str, Any] = field(default_factory=dict)


def read_journal(path: str) -> list[tuple[str, str, float]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [(w, n, float(t)) for w, n, t in (line.split() for line in f.read().splitlines())]


class BenchStep(BaseStep[BenchContext]):
    """``fault`` in execute: raise, result, exit, sigkill, sleep, stubborn, kill-actor.
    ``rollback_fault``: raise, exit."""

    progress_weight = 1.0

    def __init__(
        self,
        name: str,
        journal: str,
        fault: str | None = None,
        rollback_fault: str | None = None,
        resources: StepResources | None = None,
    ) -> None:
        self._name, self._journal, self._fault, self._rollback_fault = name, journal, fault, rollback_fault
        self._resources = resources or StepResources()

    @property
    def name(self) -> str:
        return self._name

    @property
    def resources(self) -> StepResources:
        return self._resources

    def _note(self, what: str) -> None:
        fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{what} {self._name} {time.time():.6f}\n".encode())
        finally:
            os.close(fd)

    def execute(self, ctx: BenchContext) -> StepResult:
        self._note("execute")
        ctx.values.setdefault("worked", []).append(self._name)  # what the rollback must see
        fault = self._fault
        if fault in ("exit", "sigkill"):
            time.sleep(0.5)  # the state streams to the context actor meanwhile
        if fault in ("raise", "result", "exit", "sigkill"):
            self._note("fault")
        if fault == "raise":
            raise ValueError(f"{self._name} exploded")
        if fault == "result":
            return StepResult(success=False, error=f"{self._name} said no")
        if fault == "exit":
            os._exit(1)
        if fault == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if fault == "sleep":
            time.sleep(60)
        if fault == "stubborn":
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    time.sleep(0.01)
                except BaseException:  # noqa: BLE001 - ignores the polite cancel on purpose
                    pass
        if fault == "progress":
            for i in range(1, 601):
                ctx.set_progress(i, 600)
                time.sleep(0.05)
        if fault == "kill-actor":
            self._note("kill")
            ray.kill(ray.get_actor(ctx.values["actor_name"], namespace=NAMESPACE), no_restart=True)
            time.sleep(0.3)
        return StepResult()

    def rollback(self, ctx: BenchContext, result: StepResult) -> None:
        self._note("rollback")
        self._note("saw-yes" if self._name in ctx.values.get("worked", []) else "saw-no")
        if self._rollback_fault == "raise":
            self._note("fault")
            raise OSError(f"{self._name} rollback broke")
        if self._rollback_fault == "exit":
            self._note("fault")
            os._exit(1)
        self._note("rollback-done")


@dataclass
class Figure:
    fault: str
    seconds: float | None
    completed: int
    expected: int
    note: str = ""
    message: str = ""
    saw: str = "n/a"

    def row(self) -> str:
        took = "no error (hung)" if self.seconds is None else f"{self.seconds:.2f}"
        note = f" ({self.note})" if self.note else ""
        rollbacks = "n/a" if self.expected < 0 else f"{self.completed} / {self.expected}"
        return f"| {self.fault}{note} | {took} | {rollbacks} | {self.saw} |"


def saw_latest(rows: list[tuple[str, str, float]]) -> str:
    """yes: every rollback that ran saw its own step's work; no: one did not; n/a: none ran."""
    seen = [w for w, _, _ in rows if w in ("saw-yes", "saw-no")]
    if not seen:
        return "n/a"
    return "yes" if all(w == "saw-yes" for w in seen) else "no"


def config(**ray_settings: Any) -> ExecutorConfig:
    return ExecutorConfig(executor="ray", ray=RaySettings(**ray_settings))


def measure(
    label: str,
    steps: list[BenchStep],
    journal: str,
    *,
    fault_at: str = "fault",
    timeout_s: float = 0.0,
    settings: dict[str, Any] | None = None,
    interrupt_after_s: float | None = None,
    sigterm_after_s: float | None = None,
    signal_to_send: int = signal.SIGTERM,
    progress_callback: Any = None,
) -> Figure:
    """Run ``steps``; take the fault time as ``fault_at`` says, and the error time at the driver."""
    executor = RayExecutor(config(**(settings or {})))
    ctx = BenchContext(runtime_ctx=RuntimeContext(job_id="bench"))
    submitted: dict[str, float] = {}
    signalled: list[float] = []
    raised_at: list[float] = []
    if progress_callback is not None:
        user_callback = progress_callback

        def progress_callback(current: int, total: int) -> None:
            try:
                user_callback(current, total)
            except Exception:
                raised_at.append(time.time())
                raise

    def hook(name: str, c: Any) -> None:
        c.values["actor_name"] = executor.actor_name
        submitted[name] = time.time()

    def send_when_long_runs(after_s: float, send: Any) -> None:
        deadline = time.monotonic() + 60
        while not any(w == "execute" and n == "long" for w, n, _ in read_journal(journal)):
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        time.sleep(after_s)
        signalled.append(time.time())
        send()

    if interrupt_after_s is not None:
        interrupt = _thread.interrupt_main
        threading.Thread(target=send_when_long_runs, args=(interrupt_after_s, interrupt), daemon=True).start()
    if sigterm_after_s is not None:
        # As the signal would reach Python's handler (a real SIGTERM from another thread of
        # this process may land on one of Ray's C++ threads, whose handler aborts).
        term = lambda: _thread.interrupt_main(signal_to_send)  # noqa: E731
        threading.Thread(target=send_when_long_runs, args=(sigterm_after_s, term), daemon=True).start()

    registry: StepRegistry[BenchContext] = StepRegistry()
    for step in steps:
        registry.register(step)
    recovered = False
    message = ""
    try:
        Orchestrator(registry, ctx, progress_callback, before_step=hook, executor=executor).execute()
        recovered = True
        note = "recovered: the run succeeded; time = kill → end of run"
    except BaseException as exc:  # noqa: BLE001 - every outcome is a figure
        note, message = type(exc).__name__, f"{type(exc).__name__}: {exc}"
    ended = time.time()
    rows = read_journal(journal)
    started = {n for w, n, _ in rows if w == "execute"}
    completed = sum(1 for w, _, _ in rows if w == "rollback-done")
    fault_time: float | None
    if fault_at in ("fault", "kill"):
        fault_time = next((t for w, _, t in rows if w == fault_at), None)
    elif fault_at == "timeout":
        fault_time = next(t for w, n, t in rows if w == "execute" and n == "slow") + timeout_s
    elif fault_at == "signal":
        fault_time = signalled[0] if signalled else None
    elif fault_at == "callback":
        fault_time = raised_at[0] if raised_at else None
    else:  # "submitted:<step>"
        fault_time = submitted[fault_at.split(":", 1)[1]]
    expected = 0 if recovered else len(started)
    if ctx.errors:
        note += f", {len(ctx.errors)} rollback error(s) reported"
    seconds = ended - fault_time if fault_time else None
    return Figure(label, seconds, completed, expected, note, message, saw_latest(rows))


def single_node_figures(tmp: Path) -> list[Figure]:
    figures = []
    counter = iter(range(1000))

    def journal() -> str:
        return str(tmp / f"journal-{next(counter)}")

    def case(label: str, make: Any, **kw: Any) -> None:
        j = journal()
        figures.append(measure(label, make(j), j, **kw))

    case("1. execute raises", lambda j: [BenchStep("a", j), BenchStep("b", j), BenchStep("c", j, "raise")])
    case(
        "1. execute returns success=False",
        lambda j: [BenchStep("a", j), BenchStep("b", j), BenchStep("c", j, "result")],
    )
    case("2. worker os._exit(1) mid-step", lambda j: [BenchStep("a", j), BenchStep("b", j), BenchStep("c", j, "exit")])
    case("2. worker SIGKILL mid-step", lambda j: [BenchStep("a", j), BenchStep("b", j), BenchStep("c", j, "sigkill")])
    limited = StepResources(timeout_s=2)
    case(
        "4. timeout_s=2, step in time.sleep(60)",
        lambda j: [BenchStep("a", j), BenchStep("slow", j, "sleep", resources=limited)],
        fault_at="timeout", timeout_s=2,
    )
    case(
        "4. timeout_s=2, step swallows BaseException",
        lambda j: [BenchStep("a", j), BenchStep("slow", j, "stubborn", resources=limited)],
        fault_at="timeout", timeout_s=2,
    )
    case(
        "5. Ctrl-C (interrupt_main) 0.5 s into a step",
        lambda j: [BenchStep("first", j), BenchStep("long", j, "sleep"), BenchStep("never", j)],
        fault_at="signal", interrupt_after_s=0.5,
    )
    case(
        "5. Ctrl-C (interrupt_main) as a step starts",
        lambda j: [BenchStep("first", j), BenchStep("long", j, "sleep"), BenchStep("never", j)],
        fault_at="signal", interrupt_after_s=0.0,
    )
    case(
        "6. context actor killed inside a step",
        lambda j: [BenchStep("a", j), BenchStep("killer", j, "kill-actor"), BenchStep("c", j)],
        fault_at="kill",
    )
    case(
        "6. context actor killed, later step raises",
        lambda j: [
            BenchStep("a", j), BenchStep("killer", j, "kill-actor"), BenchStep("c", j), BenchStep("d", j, "raise"),
        ],
    )
    case(
        "7. two rollbacks fail (raise, os._exit) of 4",
        lambda j: [
            BenchStep("a", j, rollback_fault="raise"), BenchStep("b", j, rollback_fault="exit"),
            BenchStep("c", j), BenchStep("d", j, "raise"),
        ],
    )
    case(
        "9. unschedulable: resources={'nope': 1}, schedule_timeout_s=2",
        lambda j: [BenchStep("a", j), BenchStep("greedy", j, resources=StepResources(resources={"nope": 1}))],
        fault_at="submitted:greedy", settings={"schedule_timeout_s": 2},
    )
    case(
        "9. unschedulable: num_gpus=2, schedule_timeout_s=2",
        lambda j: [BenchStep("a", j), BenchStep("greedy", j, resources=StepResources(num_gpus=2))],
        fault_at="submitted:greedy", settings={"schedule_timeout_s": 2},
    )
    case(
        "5. SIGTERM to the driver 0.5 s into a step",
        lambda j: [BenchStep("first", j), BenchStep("long", j, "sleep"), BenchStep("never", j)],
        fault_at="signal", sigterm_after_s=0.5,
    )
    case(
        "5. SIGHUP to the driver 0.5 s into a step",
        lambda j: [BenchStep("first", j), BenchStep("long", j, "sleep"), BenchStep("never", j)],
        fault_at="signal", sigterm_after_s=0.5, signal_to_send=signal.SIGHUP,
    )

    def broken_display(current: int, total: int) -> None:
        if current >= 40:
            raise ValueError("display broke")

    case(
        "10. progress_callback raises while a step runs",
        lambda j: [BenchStep("a", j), BenchStep("long", j, "progress"), BenchStep("never", j)],
        fault_at="callback", progress_callback=broken_display,
    )
    return figures


class BackgroundRun(threading.Thread):
    def __init__(self, steps: list[BenchStep], **settings: Any) -> None:
        super().__init__(daemon=True)
        self.steps, self.settings = steps, settings
        self.ended: float | None = None
        self.error: BaseException | None = None
        self.ctx = BenchContext(runtime_ctx=RuntimeContext(job_id="bench-nodes"))

    def run(self) -> None:
        registry: StepRegistry[BenchContext] = StepRegistry()
        for step in self.steps:
            registry.register(step)
        try:
            Orchestrator(registry, self.ctx, executor=RayExecutor(config(**self.settings))).execute()
        except BaseException as exc:  # noqa: BLE001
            self.error = exc
        self.ended = time.time()


def node_figures(tmp: Path) -> list[Figure]:
    from ray.cluster_utils import Cluster

    figures = []
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "_system_config": FAST_NODE_DEATH, "include_dashboard": False},
    )
    try:
        ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
        for label, retries, resource, spare_too in [
            ("12. node removed while its step runs (spare node added)", 0, "shared", True),
            ("12. node removed; the retry needs a resource only that node had", 1, "only_there", False),
        ]:
            j = str(tmp / f"journal-node-{retries}")
            doomed = cluster.add_node(num_cpus=1, resources={resource: 1})
            cluster.wait_for_nodes()
            pinned = StepResources(num_cpus=0.5, resources={resource: 0.5}, max_retries=retries)
            steps = [BenchStep("prep", j, resources=pinned), BenchStep("work", j, "sleep", resources=pinned)]
            run = BackgroundRun(steps, schedule_timeout_s=3)
            run.start()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if any(w == "execute" and n == "work" for w, n, _ in read_journal(j)):
                    break
                time.sleep(0.02)
            spare = None
            if spare_too:
                spare = cluster.add_node(num_cpus=1, resources={resource: 1})
                cluster.wait_for_nodes()
            cluster.remove_node(doomed, allow_graceful=False)
            removed = time.time()
            run.join(timeout=20)
            hung = run.is_alive()
            if hung:  # give the retry somewhere to run so the run can end
                spare = cluster.add_node(num_cpus=1, resources={resource: 1})
                cluster.wait_for_nodes()
                run.join(timeout=90)
            rows = read_journal(j)
            started = {n for w, n, _ in rows if w == "execute"}
            completed = sum(1 for w, _, _ in rows if w == "rollback-done")
            note = "still waiting 20 s after the loss; unblocked by adding a node" if hung else type(run.error).__name__
            seconds = None if hung or run.ended is None else run.ended - removed
            message = f"{type(run.error).__name__}: {run.error}" if run.error else "(the run succeeded once unblocked)"
            figures.append(
                Figure(label, seconds, completed, -1 if hung else len(started), note, message, saw_latest(rows))
            )
            if spare is not None:
                cluster.remove_node(spare)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return figures


def main() -> None:
    os.environ.pop("RAY_ADDRESS", None)
    tmp = Path(tempfile.mkdtemp(prefix="fault-figures-"))  # journals; removed at the end
    # Ray and the nodes it starts write worker-death notices and state dumps to fd 1:
    # send them to stderr while measuring, so stdout carries only the table.
    stdout_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
        try:
            figures = single_node_figures(tmp)
        finally:
            ray.shutdown()
        try:
            figures += node_figures(tmp)
        except Exception as exc:  # noqa: BLE001 - the multi-node part is optional
            print(f"(lost-node rows skipped: {type(exc).__name__}: {exc})", file=sys.stderr)
    finally:
        sys.stdout.flush()
        os.dup2(stdout_fd, 1)
        os.close(stdout_fd)
        shutil.rmtree(tmp, ignore_errors=True)
    print("| fault | time fault→error (s) | rollbacks completed / expected | rollback saw the step's latest state |")
    print("|---|---|---|---|")
    for figure in figures:
        print(figure.row())
    print()
    print("Errors seen at the driver:")
    for figure in figures:
        if figure.message:
            print(f"- {figure.fault}: {figure.message[:300]}")


if __name__ == "__main__":
    main()
