"""Step code in synapse-sdk's own style travels to Ray workers, and shipping errors say what failed.

The SDK writes ``class LoggingStep[C: BaseStepContext](BaseStep[C])`` (PEP 695, Python
3.12+) with ``BaseStepContext`` imported only under ``TYPE_CHECKING``: the bound cannot
be evaluated at runtime. Such modules are loaded from a file here, so the test module
itself still parses on Python 3.10/3.11.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from synapse_steps import (
    BaseStep,
    BaseStepContext,
    ContextNotSerializableError,
    Orchestrator,
    RuntimeContext,
    StepRegistry,
    StepResult,
)
from tests.conftest import ray_config

pytestmark = pytest.mark.timeout(120)

SDK_STYLE_MODULE = '''
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from synapse_steps import BaseStep, StepResult
from synapse_steps import BaseStepContext as _Base

if TYPE_CHECKING:
    from synapse_steps import BaseStepContext


@dataclass
class ItemsContext(_Base):
    items: list[str] = field(default_factory=list)


class Appends[C: BaseStepContext](BaseStep[C]):
    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return 1.0

    def execute(self, context: C) -> StepResult:
        context.items.append(self._name)
        context.runtime_ctx.logger.info(f"appended {self._name}")
        return StepResult()


class Wrapper[C: BaseStepContext, *Ts](Appends[C]):
    """A second type parameter form (TypeVarTuple) beside the bounded one."""
'''


@pytest.fixture
def sdk_style_module(tmp_path: Path) -> Iterator[ModuleType]:
    path = tmp_path / "sdk_style_steps.py"
    path.write_text(SDK_STYLE_MODULE)
    spec = importlib.util.spec_from_file_location("sdk_style_steps", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sdk_style_steps"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["sdk_style_steps"]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="PEP 695 generic classes need Python 3.12+")
def test_pep695_step_with_type_checking_only_bound_runs_on_ray(ray_session: None, sdk_style_module: ModuleType) -> None:
    from ray_backend import RayExecutor

    with pytest.raises(NameError):  # the premise: the bound cannot be evaluated at runtime
        _ = sdk_style_module.Appends.__type_params__[0].__bound__
    registry: StepRegistry[BaseStepContext] = StepRegistry()
    registry.register(sdk_style_module.Appends("a"))
    registry.register(sdk_style_module.Wrapper("b"))
    ctx = sdk_style_module.ItemsContext(runtime_ctx=RuntimeContext())
    summary = Orchestrator(registry, ctx, executor=RayExecutor(ray_config())).execute()
    assert summary == {"success": True, "steps_executed": 2, "steps_total": 2}
    assert ctx.items == ["a", "b"]
    assert [(e.step, e.data["message"]) for e in ctx.runtime_ctx.events] == [("a", "appended a"), ("b", "appended b")]


@dataclass
class PlainContext(BaseStepContext):
    items: list[str] = field(default_factory=list)


class BrokenReduce(BaseStep[PlainContext]):
    """Pickling it runs code that raises NameError (as a lazily evaluated annotation would)."""

    name = "broken"
    progress_weight = 1.0

    def execute(self, context: PlainContext) -> StepResult:
        return StepResult()

    def __reduce__(self) -> tuple[object, ...]:
        return (BrokenReduce, (undefined_name,))  # type: ignore[name-defined] # noqa: F821


def test_shipping_error_names_the_real_cause_not_handle_advice(ray_session: None) -> None:
    from ray_backend import RayExecutor

    registry: StepRegistry[PlainContext] = StepRegistry()
    registry.register(BrokenReduce())
    ctx = PlainContext(runtime_ctx=RuntimeContext())
    with pytest.raises(ContextNotSerializableError) as caught:
        Orchestrator(registry, ctx, executor=RayExecutor(ray_config())).execute()
    message = str(caught.value)
    assert message.startswith(
        "step 'broken' (BrokenReduce) cannot be pickled, so it cannot be sent to a Ray worker: "
        "NameError: name 'undefined_name' is not defined. The NameError was raised while pickling it "
        "(by value, with its class), not by an unpicklable object: raised in __reduce__() at "
    )
    assert message.endswith(f"{Path(__file__)}:{BrokenReduce.__reduce__.__code__.co_firstlineno + 1}.")
    assert "lock" not in message and "socket" not in message
    assert ctx.step_results == []
