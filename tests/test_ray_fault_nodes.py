"""Fault injection that needs several nodes: a node lost while its step runs.

A module-scoped ``Cluster`` on this machine with fast node-death detection (as in
``test_ray_multinode.py``). Each test adds the nodes it kills and removes what it added.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from ray_backend import RayExecutor
from synapse_steps import (
    BaseStep,
    BaseStepContext,
    Orchestrator,
    RuntimeContext,
    StepFailedError,
    StepResources,
    StepResult,
)
from tests.conftest import multi_node_cluster, ray_config
from tests.steps_kit import open_runs, registry_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head with 1 CPU and nothing else; tests add (and lose) their own nodes."""
    yield from multi_node_cluster({"num_cpus": 1}, [])


@pytest.fixture
def added_nodes(cluster: Cluster) -> Iterator[list[Any]]:
    """Nodes a test adds; whichever are still in the cluster are removed afterwards."""
    nodes: list[Any] = []
    before = open_runs()
    yield nodes
    for node in nodes:
        if node in cluster.worker_nodes:
            cluster.remove_node(node)
    deadline = time.monotonic() + 10
    while [key for key in open_runs() if key not in before] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [key for key in open_runs() if key not in before] == []


@dataclass
class NodeContext(BaseStepContext):
    trail: list[tuple[str, str, str]] = field(default_factory=list)


def read_journal(path: Path) -> list[tuple[str, str, str, float]]:
    """(what, step, node id, unix time) for every line steps wrote, in order."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        what, name, node, when = line.split()
        rows.append((what, name, node, float(when)))
    return rows


class NodeStep(BaseStep[NodeContext]):
    """Needs ``resource``; journals (action, name, node); may sleep on its first attempt."""

    progress_weight = 1.0

    def __init__(
        self, name: str, journal: Path, resource: str | None = None, *, sleep_s: float = 0.0, max_retries: int = 0
    ) -> None:
        self._name, self._journal, self._resource = name, str(journal), resource
        self._sleep_s, self._max_retries = sleep_s, max_retries

    @property
    def name(self) -> str:
        return self._name

    @property
    def resources(self) -> StepResources:
        custom = {self._resource: 0.5} if self._resource else {}
        return StepResources(num_cpus=0.5, resources=custom, max_retries=self._max_retries)

    def _note(self, what: str) -> int:
        node = ray.get_runtime_context().get_node_id()
        fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{what} {self._name} {node} {time.time():.6f}\n".encode())
        finally:
            os.close(fd)
        return sum(1 for w, n, _, _ in read_journal(Path(self._journal)) if (w, n) == (what, self._name))

    def execute(self, ctx: NodeContext) -> StepResult:
        attempt = self._note("execute")
        ctx.trail.append(("execute", self._name, ray.get_runtime_context().get_node_id()))
        if attempt == 1:
            time.sleep(self._sleep_s)
        return StepResult()

    def rollback(self, ctx: NodeContext, result: StepResult) -> None:
        self._note("rollback")
        ctx.trail.append(("rollback", self._name, ray.get_runtime_context().get_node_id()))


def add_node(cluster: Cluster, added: list[Any], **resources: float) -> Any:
    node = cluster.add_node(num_cpus=1, resources=resources)
    added.append(node)
    cluster.wait_for_nodes()
    return node


class BackgroundRun:
    """The run goes in a thread, so the test's main thread can add and remove nodes
    (``Cluster`` must be driven from the main thread) and bound the wall time."""

    def __init__(self, steps: list[BaseStep], schedule_timeout_s: float) -> None:
        self.ctx = NodeContext(runtime_ctx=RuntimeContext())
        self.error: BaseException | None = None
        self.ended: float | None = None
        executor = RayExecutor(ray_config(schedule_timeout_s=schedule_timeout_s))
        self._orchestrator = Orchestrator(registry_of(*steps), self.ctx, executor=executor)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._orchestrator.execute()
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            self.error = exc
        self.ended = time.monotonic()

    def join(self, timeout_s: float) -> bool:
        """True when the run ended within ``timeout_s``."""
        self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()


def wait_for_start(journal: Path, step: str, run: BackgroundRun, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while ("execute", step) not in [(w, n) for w, n, _, _ in read_journal(journal)]:
        assert run.ended is None, f"the run ended before '{step}' started: {run.error!r}"
        assert time.monotonic() < deadline, f"'{step}' never started"
        time.sleep(0.05)


def test_node_lost_while_its_step_runs_fails_the_step_and_rollbacks_run_elsewhere(
    cluster: Cluster, added_nodes: list[Any], tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    doomed = add_node(cluster, added_nodes, shared=1)
    steps = [
        NodeStep("on-head", journal),
        NodeStep("prep", journal, "shared"),
        NodeStep("work", journal, "shared", sleep_s=60),
        NodeStep("never", journal),
    ]
    run = BackgroundRun(steps, schedule_timeout_s=10)
    wait_for_start(journal, "work", run)
    spare = add_node(cluster, added_nodes, shared=1)  # where the lost node's rollbacks can go
    cluster.remove_node(doomed, allow_graceful=False)
    removed_at = time.monotonic()
    assert run.join(timeout_s=30), "the run did not end after its node was lost"
    error = run.error
    assert run.ended is not None

    assert isinstance(error, StepFailedError), repr(error)
    assert error.step_name == "work" and str(error).startswith("Step 'work' failed: ")
    assert "node" in str(error) and ("died" in str(error) or "lost" in str(error)), str(error)
    assert error.rollback_errors == [], error.rollback_errors
    assert run.ended - removed_at < 10, f"the failure surfaced {run.ended - removed_at:.1f}s after the node loss"
    head = cluster.head_node.node_id
    journal_rows = [(w, n, node) for w, n, node, _ in read_journal(journal)]
    assert journal_rows == [
        ("execute", "on-head", head),
        ("execute", "prep", doomed.node_id),
        ("execute", "work", doomed.node_id),
        ("rollback", "work", spare.node_id),  # the lost node's steps are undone where their resources still are
        ("rollback", "prep", spare.node_id),
        ("rollback", "on-head", head),
    ]
    # The lost step's rollback saw what it had streamed before its node died.
    assert [(a, n) for a, n, _ in run.ctx.trail] == [
        ("execute", "on-head"), ("execute", "prep"), ("execute", "work"),
        ("rollback", "work"), ("rollback", "prep"), ("rollback", "on-head"),
    ]


def test_node_lost_with_retries_reruns_the_step_on_a_surviving_node(
    cluster: Cluster, added_nodes: list[Any], tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    doomed = add_node(cluster, added_nodes, shared=1)
    steps = [
        NodeStep("prep", journal),
        NodeStep("work", journal, "shared", sleep_s=60, max_retries=1),
        NodeStep("after", journal),
    ]
    run = BackgroundRun(steps, schedule_timeout_s=10)
    wait_for_start(journal, "work", run)
    spare = add_node(cluster, added_nodes, shared=1)
    cluster.remove_node(doomed, allow_graceful=False)
    removed_at = time.monotonic()
    assert run.join(timeout_s=30), "the run did not end after its node was lost"

    assert run.error is None, run.error
    assert run.ended is not None and run.ended - removed_at < 15
    work = [node for w, n, node, _ in read_journal(journal) if (w, n) == ("execute", "work")]
    assert work == [doomed.node_id, spare.node_id]
    assert [(a, n, node) for a, n, node in run.ctx.trail if n == "work"] == [("execute", "work", spare.node_id)]
    assert [n for a, n, _ in run.ctx.trail] == ["prep", "work", "after"]


def test_retry_that_only_the_lost_node_could_run_fails_instead_of_waiting_forever(
    cluster: Cluster, added_nodes: list[Any], tmp_path: Path
) -> None:
    """Ray retries the crashed task and waits, with no error, for a node with ``only_there``."""
    journal = tmp_path / "journal"
    doomed = add_node(cluster, added_nodes, only_there=1)
    steps = [NodeStep("prep", journal), NodeStep("work", journal, "only_there", sleep_s=60, max_retries=1)]
    run = BackgroundRun(steps, schedule_timeout_s=3)
    wait_for_start(journal, "work", run)
    cluster.remove_node(doomed, allow_graceful=False)
    ended = run.join(timeout_s=3 + 3 + 10)  # the retry's schedule timeout, then the rollbacks, and slack
    if not ended:  # unblock the run: give the retry a node, so it ends and cleans up
        add_node(cluster, added_nodes, only_there=1)
        run.join(timeout_s=60)
    assert ended, "the run waited for a node that will never come back (no schedule timeout on the retry)"
    error = run.error
    assert isinstance(error, StepFailedError) and error.step_name == "work", repr(error)
    assert "only_there" in str(error)
    assert ("rollback", "prep") in [(w, n) for w, n, _, _ in read_journal(journal)]
