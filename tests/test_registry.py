"""StepRegistry: order, insertion by name, weights, proportions, and name rules."""

from __future__ import annotations

import pytest

from synapse_steps import BaseStep, StepDefinitionError, StepRegistry, StepResult, UnknownStepError
from tests.steps_kit import KitContext, KitStep

pytestmark = pytest.mark.timeout(30)


class PropStep(BaseStep[KitContext]):
    """A step with a chosen progress_proportion."""

    def __init__(self, name: str, weight: float = 1.0, proportion: int = 0) -> None:
        self._name, self._weight, self._proportion = name, weight, proportion

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return self._weight

    @property
    def progress_proportion(self) -> int:
        return self._proportion

    def execute(self, ctx: KitContext) -> StepResult:
        return StepResult()


def names(registry: StepRegistry) -> list[str]:
    return [s.name for s in registry.get_steps()]


def make(*step_names: str) -> StepRegistry[KitContext]:
    registry = StepRegistry[KitContext]()
    for name in step_names:
        registry.register(KitStep(name))
    return registry


def test_register_keeps_registration_order_and_the_same_step_objects():
    a, b, c = KitStep("a"), KitStep("b"), KitStep("c")
    registry = StepRegistry[KitContext]()
    for step in (a, b, c):
        registry.register(step)
    steps = registry.get_steps()
    assert [s.name for s in steps] == ["a", "b", "c"]
    assert steps[0] is a and steps[1] is b and steps[2] is c


def test_get_steps_returns_a_copy():
    registry = make("a", "b")
    steps = registry.get_steps()
    steps.clear()
    steps2 = registry.get_steps()
    steps2.append(KitStep("zzz"))
    steps2.reverse()
    assert names(registry) == ["a", "b"]
    assert len(registry) == 2


def test_unregister_removes_only_the_named_step():
    registry = make("a", "b", "c")
    registry.unregister("b")
    assert names(registry) == ["a", "c"]
    assert len(registry) == 2
    assert registry.get_step_orders() == {"a": 0, "c": 1}


def test_unregistered_name_can_be_registered_again():
    registry = make("a", "b")
    registry.unregister("a")
    registry.register(KitStep("a"))
    assert names(registry) == ["b", "a"]


def test_insert_before_places_the_step_just_before_the_named_one():
    registry = make("a", "b", "c")
    registry.insert_before("b", KitStep("x"))
    registry.insert_before("a", KitStep("first"))
    assert names(registry) == ["first", "a", "x", "b", "c"]


def test_insert_after_places_the_step_just_after_the_named_one():
    registry = make("a", "b", "c")
    registry.insert_after("a", KitStep("x"))
    registry.insert_after("c", KitStep("last"))
    assert names(registry) == ["a", "x", "b", "c", "last"]


@pytest.mark.parametrize("method", ["insert_before", "insert_after"])
def test_insert_relative_to_a_missing_step_is_a_value_error_naming_it(method):
    registry = make("a", "b")
    with pytest.raises(ValueError, match="'nope'") as info:
        getattr(registry, method)("nope", KitStep("x"))
    assert isinstance(info.value, UnknownStepError)
    assert names(registry) == ["a", "b"], "a failed insert must not change the registry"


def test_total_weight_is_the_sum_of_the_weights():
    registry = StepRegistry[KitContext]()
    assert registry.total_weight == 0
    registry.register(KitStep("a", 0.25))
    registry.register(KitStep("b", 0.5))
    registry.register(KitStep("c", 2))
    assert registry.total_weight == pytest.approx(2.75)
    registry.unregister("c")
    assert registry.total_weight == pytest.approx(0.75)


def test_get_step_proportions_leaves_out_zero_proportions():
    registry = StepRegistry[KitContext]()
    registry.register(PropStep("load", proportion=10))
    registry.register(PropStep("check", proportion=0))
    registry.register(PropStep("train", proportion=70))
    registry.register(PropStep("save", proportion=20))
    assert registry.get_step_proportions() == {"load": 10, "train": 70, "save": 20}


def test_get_step_orders_follows_execution_order_after_insertions():
    registry = make("a", "b")
    assert registry.get_step_orders() == {"a": 0, "b": 1}
    registry.insert_before("b", KitStep("x"))
    assert registry.get_step_orders() == {"a": 0, "x": 1, "b": 2}


def test_len_and_bool():
    registry = StepRegistry[KitContext]()
    assert len(registry) == 0
    assert not registry
    registry.register(KitStep("a"))
    assert len(registry) == 1
    assert registry
    registry.unregister("a")
    assert len(registry) == 0
    assert not registry


@pytest.mark.parametrize("how", ["register", "insert_before", "insert_after"])
def test_a_second_step_with_an_existing_name_is_an_error_naming_it(how):
    registry = make("load", "train")
    dup = KitStep("load")
    with pytest.raises(StepDefinitionError, match="'load'"):
        if how == "register":
            registry.register(dup)
        else:
            getattr(registry, how)("train", dup)
    assert names(registry) == ["load", "train"]
    assert registry.get_steps()[0] is not dup


@pytest.mark.parametrize("bad_name", ["", "   "])
def test_an_empty_step_name_is_an_error(bad_name):
    registry = StepRegistry[KitContext]()
    with pytest.raises(StepDefinitionError, match="empty name"):
        registry.register(KitStep(bad_name))
    assert len(registry) == 0
