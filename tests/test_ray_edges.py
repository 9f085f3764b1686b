"""Edge cases a hostile review found on Ray: a retried exception with its own ``__init__``,
an unpicklable value a step leaves in the context, and an open file nested in a field."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from synapse_steps import (
    BaseStep,
    BaseStepContext,
    ContextNotSerializableError,
    Orchestrator,
    RuntimeContext,
    StepExecutor,
    StepFailedError,
    StepRegistry,
    StepResources,
    StepResult,
)
from tests.conftest import ray_config

pytestmark = pytest.mark.timeout(120)


@dataclass
class EdgeContext(BaseStepContext):
    lock: Any = None
    files: dict[str, Any] = field(default_factory=dict)


def run(steps: list[BaseStep], ctx: EdgeContext, executor: StepExecutor) -> None:
    registry = StepRegistry[EdgeContext]()
    for step in steps:
        registry.register(step)
    Orchestrator(registry, ctx, executor=executor).execute()


class Flaky(Exception):
    """An exception whose ``__init__`` does not take its own ``args``."""

    def __init__(self, code: int) -> None:
        super().__init__(f"flaky {code}")


class Strict(Exception):
    """Worse: rebuilt from its ``args`` on the driver, its ``__init__`` raises."""

    def __init__(self, code: int) -> None:
        super().__init__(f"strict {code:03d}")


class Raises(BaseStep[EdgeContext]):
    name = "flaky"
    progress_weight = 1.0

    def __init__(self, kind: type[Exception]) -> None:
        self.kind = kind

    @property
    def resources(self) -> StepResources:
        return StepResources(max_retries=1, retry_exceptions=(self.kind,))

    def execute(self, ctx: EdgeContext) -> StepResult:
        raise self.kind(7)


@pytest.mark.parametrize(("kind", "message"), [(Flaky, "flaky 7"), (Strict, "strict 007")], ids=["flaky", "strict"])
def test_a_retried_exception_with_its_own_init_keeps_its_message_and_traceback(
    make_executor: Callable[[], StepExecutor], kind: type[Exception], message: str
) -> None:
    ctx = EdgeContext(runtime_ctx=RuntimeContext())
    with pytest.raises(StepFailedError):
        run([Raises(kind)], ctx, make_executor())
    [result] = ctx.step_results
    assert result.error == message
    assert result.traceback and "raise self.kind(7)" in result.traceback and "\x1b[" not in result.traceback
    assert result.traceback.rstrip().endswith(f"{kind.__name__}: {message}")


class LeavesLock(BaseStep[EdgeContext]):
    name = "locker"
    progress_weight = 1.0

    def execute(self, ctx: EdgeContext) -> StepResult:
        ctx.lock = threading.Lock()
        return StepResult()


def test_an_unpicklable_value_a_step_leaves_in_the_context_is_named(ray_session: None) -> None:
    from ray_backend import RayExecutor

    ctx = EdgeContext(runtime_ctx=RuntimeContext())
    with pytest.raises(StepFailedError):
        run([LeavesLock()], ctx, RayExecutor(ray_config()))
    [result] = ctx.step_results
    assert result.error is not None
    assert result.error.startswith(
        "step 'locker' left context field 'lock' (lock) that cannot be sent back from the worker: "
    ), result.error
    assert ctx.lock is None  # the driver's context keeps what it had


@dataclass
class Sink:
    handle: Any


class Noop(BaseStep[EdgeContext]):
    name = "noop"
    progress_weight = 1.0

    def execute(self, ctx: EdgeContext) -> StepResult:
        return StepResult()


@pytest.mark.parametrize(
    ("files", "path"),
    [
        (lambda f: {"log": f}, "['log']"),
        (lambda f: {"logs": [f]}, "['logs'][0]"),
        (lambda f: {"pair": ("x", {"inner": f})}, "['pair'][1]['inner']"),
        (lambda f: {"sink": Sink(handle=f)}, "['sink'].handle"),
    ],
    ids=["dict", "list", "tuple-dict", "dataclass"],
)
def test_an_open_file_nested_in_a_field_is_refused_naming_its_path(
    ray_session: None, tmp_path: Path, files: Callable[[Any], dict[str, Any]], path: str
) -> None:
    from ray_backend import RayExecutor

    target = tmp_path / "data.txt"
    target.write_text("data")
    with open(target) as handle:
        ctx = EdgeContext(runtime_ctx=RuntimeContext(), files=files(handle))
        with pytest.raises(ContextNotSerializableError) as info:
            run([Noop()], ctx, RayExecutor(ray_config()))
    assert str(info.value).startswith(
        f"context field 'files' → {path} (TextIOWrapper) is an open file, which cannot be sent to a Ray worker"
    ), str(info.value)
    assert ctx.step_results == []


def test_a_self_referencing_field_is_walked_without_recursing_forever(ray_session: None) -> None:
    from ray_backend import RayExecutor

    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    ctx = EdgeContext(runtime_ctx=RuntimeContext(), files=cyclic)
    run([Noop()], ctx, RayExecutor(ray_config()))
    assert [r.success for r in ctx.step_results] == [True]
