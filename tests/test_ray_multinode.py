"""Placement and rollback affinity on a multi-node cluster running on this machine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

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
from tests.steps_kit import registry_of

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Head with 1 CPU, two workers that each carry a custom resource naming them."""
    workers = [{"num_cpus": 1, "resources": {"node_a": 1}}, {"num_cpus": 1, "resources": {"node_b": 1}}]
    yield from multi_node_cluster({"num_cpus": 1}, workers)


def _node_with(resource: str) -> str:
    return next(n["NodeID"] for n in ray.nodes() if n["Alive"] and resource in n["Resources"])


@dataclass
class PlacedContext(BaseStepContext):
    trail: list[tuple[str, str, str]] = field(default_factory=list)


class PinnedStep(BaseStep[PlacedContext]):
    """Runs only where ``resource`` exists; records (action, name, node id)."""

    def __init__(self, name: str, resource: str, *, fail: bool = False, sleep_s: float = 0.0) -> None:
        self._name, self._resource, self._fail, self._sleep_s = name, resource, fail, sleep_s

    @property
    def name(self) -> str:
        return self._name

    progress_weight = 1.0

    @property
    def resources(self) -> StepResources:
        return StepResources(num_cpus=0.5, resources={self._resource: 0.5})

    def execute(self, ctx: PlacedContext) -> StepResult:
        ctx.trail.append(("execute", self._name, ray.get_runtime_context().get_node_id()))
        time.sleep(self._sleep_s)
        if self._fail:
            raise RuntimeError(f"{self._name} failed on purpose")
        return StepResult()

    def rollback(self, ctx: PlacedContext, result: StepResult) -> None:
        ctx.trail.append(("rollback", self._name, ray.get_runtime_context().get_node_id()))


def test_steps_run_on_the_nodes_their_resources_pin_and_roll_back_there(cluster: Cluster) -> None:
    node_a, node_b = _node_with("node_a"), _node_with("node_b")
    ctx = PlacedContext(runtime_ctx=RuntimeContext())
    registry = registry_of(PinnedStep("on-a", "node_a"), PinnedStep("on-b", "node_b"), PinnedStep("fails-on-a", "node_a", fail=True))
    with pytest.raises(StepFailedError, match="fails-on-a"):
        Orchestrator(registry, ctx, executor=RayExecutor(ray_config())).execute()
    assert ctx.trail == [
        ("execute", "on-a", node_a),
        ("execute", "on-b", node_b),
        ("execute", "fails-on-a", node_a),
        ("rollback", "fails-on-a", node_a),
        ("rollback", "on-b", node_b),
        ("rollback", "on-a", node_a),
    ]


def test_rollback_of_a_step_whose_node_died_runs_elsewhere(cluster: Cluster) -> None:
    """Soft affinity: the rollback goes back to the step's node, or anywhere it fits if that node is gone."""
    doomed = cluster.add_node(num_cpus=1, resources={"shared": 1})
    cluster.wait_for_nodes()
    doomed_id = _node_with("shared")
    spare_ids: list[str] = []

    def swap_nodes(name: str, ctx: PlacedContext) -> None:
        if name == "fails-on-b":
            spare = cluster.add_node(num_cpus=1, resources={"shared": 1})
            cluster.remove_node(doomed)
            cluster.wait_for_nodes()
            spare_ids.append(spare.node_id)

    ctx = PlacedContext(runtime_ctx=RuntimeContext())
    registry = registry_of(PinnedStep("on-shared", "shared"), PinnedStep("fails-on-b", "node_b", fail=True))
    try:
        with pytest.raises(StepFailedError, match="fails-on-b failed on purpose"):
            Orchestrator(registry, ctx, before_step=swap_nodes, executor=RayExecutor(ray_config())).execute()
        assert ctx.trail[0] == ("execute", "on-shared", doomed_id)
        assert ctx.trail[-1] == ("rollback", "on-shared", spare_ids[0])
        assert spare_ids[0] != doomed_id
    finally:
        for node in list(cluster.worker_nodes):
            if node.node_id in spare_ids:
                cluster.remove_node(node)


class RecordsActorNode(BaseStep[PlacedContext]):
    """Runs on node_a and notes which node holds the run's context actor."""

    name = "where-is-the-actor"
    progress_weight = 1.0

    @property
    def resources(self) -> StepResources:
        return StepResources(num_cpus=0.5, resources={"node_a": 0.5})

    def execute(self, ctx: PlacedContext) -> StepResult:
        deadline = time.monotonic() + 30  # the actor starts asynchronously, maybe after this step
        while not ctx.trail and time.monotonic() < deadline:
            # The actor's node: Ray's public state API (ray.util.state) needs the dashboard, which
            # this cluster does not run, so this one read goes through Ray's private state module.
            for actor in ray._private.state.actors().values():
                if actor["Name"].startswith("synapse-steps-context-") and actor["State"] == "ALIVE":
                    ctx.trail.append(("actor", actor["Name"], actor["Address"]["NodeID"]))
            time.sleep(0.1)
        return StepResult()


def test_the_context_actor_lives_on_the_driver_node(cluster: Cluster) -> None:
    """A worker node's loss must not take the run's bookkeeping with it."""
    ctx = PlacedContext(runtime_ctx=RuntimeContext())
    executor = RayExecutor(ray_config())
    Orchestrator(registry_of(RecordsActorNode()), ctx, executor=executor).execute()
    nodes = {node for kind, name, node in ctx.trail if kind == "actor" and name == executor.actor_name}
    assert nodes == {ray.get_runtime_context().get_node_id()}
