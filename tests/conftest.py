"""Shared fixtures: one local Ray per test session, and a factory per executor kind.

Tests that must behave identically everywhere take ``make_executor`` and run once
per executor ("local", "ray"), like CPython's executor test mixins.

The ``ray`` marker goes on every test that starts or uses Ray: here, on those that take
a fixture in ``RAY_FIXTURES``, or the "ray" ``make_executor`` or ``executor`` parameter; modules whose every test
needs Ray, and tests that start it in a subprocess, mark themselves.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from synapse_steps import ExecutorConfig, LocalExecutor, RaySettings, StepExecutor

if TYPE_CHECKING:
    from ray.cluster_utils import Cluster

pytest_plugins = ["tests.ray_head"]  # the `cluster` fixture: a `ray start --head` with its dashboard

# Fixtures that start or connect Ray (all but ray_session are modules' own clusters).
RAY_FIXTURES = frozenset({"ray_session", "cluster", "gpu_cluster", "external_head"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use Ray through their fixtures, so ``-m "not ray"`` leaves them out."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        on_ray_executor = "ray" in (params.get("make_executor"), params.get("executor"))
        if on_ray_executor or RAY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ray)


@pytest.fixture
def clean_synapse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets may come from ``SYNAPSE_STEPS_*`` environment variables."""
    for name in list(os.environ):
        if name.startswith("SYNAPSE_STEPS_"):
            monkeypatch.delenv(name)


RAY_TEMP_DIR = os.path.join(tempfile.gettempdir(), f"ss-{os.getpid()}")  # AF_UNIX paths must stay short


@pytest.fixture(scope="session", autouse=True)
def _journal_in_a_temp_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """CLI runs journal to the per-user state folder by default: keep the tests' runs out of the real one."""
    previous = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("xdg-state"))
    yield
    if previous is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = previous


@pytest.fixture(scope="session")
def _ray_shutdown_at_end() -> Iterator[None]:
    yield
    import ray

    ray.shutdown()


@pytest.fixture
def ray_session(_ray_shutdown_at_end: None) -> None:
    """A local Ray shared by the session (starting one costs ~3 s).

    Function-scoped so that it comes back after a module that ran its own
    multi-node cluster (see ``ray_cluster`` in those modules).
    """
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, _temp_dir=RAY_TEMP_DIR, logging_level="ERROR")


# Node death noticed in ~1.5 s instead of ~15 s (ray-notes: head _system_config for tests).
FAST_NODE_DEATH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


def multi_node_cluster(head: dict[str, object], workers: list[dict[str, object]]) -> Iterator[Cluster]:
    """A ``ray.cluster_utils.Cluster`` on this machine, connected for the module's tests.

    Use from a module-scoped fixture (``yield from multi_node_cluster(...)``): it
    disconnects whatever Ray this process had, and shuts the cluster down after.
    """
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**head, "_system_config": FAST_NODE_DEATH, "include_dashboard": False},
    )
    for worker in workers:
        cluster.add_node(**worker)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR")
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def ray_config(**ray_settings: object) -> ExecutorConfig:
    """A Ray executor config with fast progress polling for tests."""
    settings = {"progress_interval_s": 0.05, **ray_settings}
    return ExecutorConfig(executor="ray", ray=RaySettings(**settings))


@pytest.fixture(params=["local", "ray"])
def make_executor(request: pytest.FixtureRequest) -> Callable[[], StepExecutor]:
    """Factory for a fresh executor of each kind; the Ray one uses the session Ray."""
    if request.param == "local":
        return LocalExecutor
    request.getfixturevalue("ray_session")
    from ray_backend import RayExecutor

    return lambda: RayExecutor(ray_config())


@pytest.fixture
def executor_kind(make_executor: Callable[[], StepExecutor], request: pytest.FixtureRequest) -> str:
    return request.node.callspec.params["make_executor"]
