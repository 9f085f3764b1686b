"""Shared fixtures: one local Ray per test session, and a factory per executor kind.

Tests that must behave identically everywhere take ``make_executor`` and run once
per executor ("local", "ray"), like CPython's executor test mixins.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator

import pytest

from synapse_steps import ExecutorConfig, LocalExecutor, RaySettings, StepExecutor

RAY_TEMP_DIR = os.path.join(tempfile.gettempdir(), f"ss-{os.getpid()}")  # AF_UNIX paths must stay short


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
