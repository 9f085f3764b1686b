"""The public surface is pinned: what ``__all__`` exports, and that Ray stays optional."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import synapse_steps

pytestmark = pytest.mark.timeout(120)

EXPECTED_ALL = [
    "BaseAction",
    "BaseStep",
    "BaseStepContext",
    "BaseTrainAction",
    "BaseUploadAction",
    "CallbackError",
    "ConfigError",
    "ContextNotSerializableError",
    "ExecutorConfig",
    "ExecutorUnavailableError",
    "JournalError",
    "LocalExecutor",
    "LogLevel",
    "LoggingStep",
    "MessageCode",
    "Orchestrator",
    "RaySettings",
    "RollbackIncompleteError",
    "RollbackTimeoutError",
    "RuntimeContext",
    "RuntimeEvent",
    "ShardFailedError",
    "StepDefinitionError",
    "StepExecutor",
    "StepFailedError",
    "StepOptions",
    "StepProtocol",
    "StepRecord",
    "StepRegistry",
    "StepResources",
    "StepResult",
    "StepsError",
    "TimingStep",
    "TrainContext",
    "UnknownStepError",
    "UploadContext",
    "ValidationStep",
    "load_config",
]


def test_all_is_pinned():
    assert sorted(synapse_steps.__all__) == EXPECTED_ALL
    assert len(synapse_steps.__all__) == len(set(synapse_steps.__all__))


def test_every_exported_name_resolves():
    for name in synapse_steps.__all__:
        assert getattr(synapse_steps, name) is not None, name


def test_error_hierarchy_roots_in_steps_error_and_keeps_builtin_bases():
    from synapse_steps import (
        ConfigError,
        ContextNotSerializableError,
        ExecutorUnavailableError,
        StepDefinitionError,
        StepFailedError,
        StepsError,
        UnknownStepError,
    )

    assert issubclass(StepFailedError, RuntimeError)
    assert issubclass(StepDefinitionError, ValueError)
    assert issubclass(UnknownStepError, StepDefinitionError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ContextNotSerializableError, TypeError)
    assert issubclass(ExecutorUnavailableError, ImportError)
    for cls in (StepFailedError, StepDefinitionError, UnknownStepError, ConfigError,
                ContextNotSerializableError, ExecutorUnavailableError):
        assert issubclass(cls, StepsError), cls


def test_ray_backend_all_is_pinned():
    import ray_backend

    assert sorted(ray_backend.__all__) == ["RayExecutor", "RayOrchestrator", "StepTaskFailed"]


def run_fresh(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNAPSE_STEPS_")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, env=env
    )


def test_importing_synapse_steps_does_not_import_ray():
    proc = run_fresh(
        """
        import sys
        import synapse_steps
        print("ray" in sys.modules, any(m == "ray" or m.startswith("ray.") for m in sys.modules))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_every_synapse_steps_module_and_a_local_run_leave_ray_unimported():
    proc = run_fresh(
        """
        import importlib, pkgutil, sys
        import synapse_steps
        for info in pkgutil.walk_packages(synapse_steps.__path__, "synapse_steps."):
            importlib.import_module(info.name)
        from synapse_steps import BaseStep, BaseStepContext, Orchestrator, RuntimeContext, StepRegistry, StepResult

        class Hello(BaseStep):
            name = "hello"
            progress_weight = 1.0
            def execute(self, ctx):
                return StepResult(data={"hi": 1})

        registry = StepRegistry()
        registry.register(Hello())
        summary = Orchestrator.from_config(registry, BaseStepContext(runtime_ctx=RuntimeContext())).execute()
        print(summary["success"], "ray" in sys.modules)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False"]
