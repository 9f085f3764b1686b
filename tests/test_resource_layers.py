"""One resource model merged in layers, one test per layer:

built-in defaults < config ``defaults`` < what the step declares < config ``steps.NAME``
(a step), and built-in defaults < the ``ctx.map`` call's arguments (a shard).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from synapse_steps import (
    ConfigError,
    ExecutorConfig,
    LocalExecutor,
    Orchestrator,
    RuntimeContext,
    StepFailedError,
    StepOptions,
    StepResources,
    StepResult,
    UnknownStepError,
    load_config,
)
from synapse_steps.fanout import ShardOptions
from synapse_steps.resources import BUILT_IN, resolve
from tests.conftest import ray_config
from tests.steps_kit import KitContext, KitStep, registry_of

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("clean_synapse_env")]


class Declares(KitStep):
    """A step whose ``resources`` is the layer it is given."""

    def __init__(self, name: str, resources: StepResources) -> None:
        super().__init__(name)
        self._resources = resources

    @property
    def resources(self) -> StepResources:
        return self._resources


def values(resources: StepResources, *names: str) -> tuple[Any, ...]:
    return tuple(getattr(resources, name) for name in names)


# --- layer 1: built-in defaults ---------------------------------------------------------------


def test_layer_1_built_in_defaults_fill_every_field_nothing_else_sets() -> None:
    resources = ExecutorConfig().resources_for(Declares("a", StepResources()))
    assert resources.declared() == {
        "num_cpus": 1.0,
        "num_gpus": 0.0,
        "resources": {},
        "max_retries": 0,
        "retry_exceptions": False,
        "rollback_timeout_s": 300.0,
        "rollback_retries": 0,
    }
    assert values(resources, "memory", "accelerator_type", "timeout_s") == (None, None, None)
    assert resources == BUILT_IN


def test_layer_1_a_step_without_a_resources_member_gets_the_built_in_defaults() -> None:
    class Bare:  # the step protocol's required members only
        name = "bare"
        progress_weight = 1.0

        def execute(self, context: Any) -> StepResult:
            return StepResult()

    assert LocalExecutor().resources_for(Bare()) == BUILT_IN  # type: ignore[arg-type]


# --- layer 2: config defaults -----------------------------------------------------------------


def test_layer_2_config_defaults_beat_the_built_in_defaults() -> None:
    config = ExecutorConfig(defaults={"num_cpus": 2, "max_retries": 3, "timeout_s": 60, "rollback_retries": 1})
    resources = config.resources_for(Declares("a", StepResources()))
    assert values(resources, "num_cpus", "max_retries", "timeout_s", "rollback_retries") == (2, 3, 60, 1)
    assert values(resources, "num_gpus", "rollback_timeout_s") == (0, 300)  # not set there: built in


# --- layer 3: what the step declares ----------------------------------------------------------


def test_layer_3_the_step_declaration_beats_config_defaults() -> None:
    config = ExecutorConfig(defaults={"num_cpus": 2, "num_gpus": 0.5, "timeout_s": 60})
    resources = config.resources_for(Declares("a", StepResources(num_cpus=4, resources={"trainer": 1})))
    assert values(resources, "num_cpus", "resources") == (4, {"trainer": 1})
    assert values(resources, "num_gpus", "timeout_s") == (0.5, 60)  # not declared: the config's


def test_layer_3_a_declaration_equal_to_a_built_in_default_still_beats_config_defaults() -> None:
    """The precedence bug: ``num_cpus=1.0`` used to be taken for "not declared" and lost to ``defaults``."""
    config = ExecutorConfig(defaults={"num_cpus": 2, "max_retries": 3, "rollback_retries": 1})
    step = Declares("a", StepResources(num_cpus=1.0, max_retries=0, rollback_retries=0))
    assert values(config.resources_for(step), "num_cpus", "max_retries", "rollback_retries") == (1.0, 0, 0)


def test_layer_3_the_declaration_from_a_config_file_too(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("defaults: {num_cpus: 2, timeout_s: 60}\n")
    resources = load_config(path).resources_for(Declares("a", StepResources(num_cpus=1)))
    assert values(resources, "num_cpus", "timeout_s") == (1, 60)


# --- layer 4: config steps.NAME ---------------------------------------------------------------


def test_layer_4_steps_name_beats_the_step_declaration_for_that_step_only() -> None:
    config = ExecutorConfig(
        defaults={"num_cpus": 2, "timeout_s": 60},
        steps={"train": {"num_gpus": 2, "accelerator_type": "A100", "timeout_s": 3600}},
    )
    declared = StepResources(num_cpus=4, num_gpus=1, memory=2**30)
    train = config.resources_for(Declares("train", declared))
    assert values(train, "num_gpus", "accelerator_type", "timeout_s") == (2, "A100", 3600)
    assert values(train, "num_cpus", "memory") == (4, 2**30)  # declared, not overridden
    other = config.resources_for(Declares("eval", declared))
    assert values(other, "num_cpus", "num_gpus", "timeout_s", "accelerator_type") == (4, 1, 60, None)


def test_layer_4_an_override_for_a_step_the_run_lacks_is_refused_when_the_run_opens() -> None:
    config = ExecutorConfig(steps={"trian": {"num_gpus": 1}})
    ctx = KitContext(runtime_ctx=RuntimeContext())
    with pytest.raises(UnknownStepError) as info:
        Orchestrator(registry_of("load", "train"), ctx, executor=LocalExecutor(config)).execute()
    assert str(info.value) == (
        "config 'steps' overrides ['trian'], but no registered step has that name; registered: ['load', 'train']"
    )
    assert ctx.trail == []


# --- layer 5: per-call arguments (fan-out) ----------------------------------------------------


class RecordingRuntime(RuntimeContext):
    """The in-process runtime, keeping the options each ``ctx.map`` call resolved to."""

    def __init__(self) -> None:
        super().__init__()
        self.maps: list[ShardOptions] = []

    def map(self, fn: Any, items: Any, options: ShardOptions, step: str | None = None) -> list[Any]:
        self.maps.append(options)
        return super().map(fn, items, options, step)


class FansOut(Declares):
    def __init__(self, **map_arguments: Any) -> None:
        super().__init__("fan", StepResources(num_cpus=0, num_gpus=1, max_retries=2))
        self._arguments = map_arguments

    def execute(self, ctx: KitContext) -> StepResult:
        ctx.values["out"] = ctx.map(abs, [-1, -2], **self._arguments)
        return StepResult()


def run_fan_out(**map_arguments: Any) -> tuple[KitContext, ShardOptions]:
    runtime = RecordingRuntime()
    ctx = KitContext(runtime_ctx=runtime)
    config = ExecutorConfig(defaults={"num_cpus": 3, "timeout_s": 5}, steps={"fan": {"num_gpus": 2}})
    Orchestrator(registry_of(FansOut(**map_arguments)), ctx, executor=LocalExecutor(config)).execute()
    [options] = runtime.maps
    return ctx, options


def test_layer_5_the_call_arguments_beat_the_built_in_defaults() -> None:
    ctx, options = run_fan_out(num_cpus=0.5, memory=2**20, max_retries=1, max_in_flight=2)
    assert ctx.values["out"] == [1, 2]
    assert values(options.resources, "num_cpus", "memory", "max_retries") == (0.5, 2**20, 1)
    assert options.max_in_flight == 2


def test_layer_5_a_shard_does_not_inherit_its_step_or_the_config_resources() -> None:
    """The step holds a GPU (declared, then 2 by ``steps.fan``): a shard asking for it would wait forever."""
    _, options = run_fan_out()
    assert options.resources == BUILT_IN
    assert options.max_in_flight is None


def test_layer_5_bad_call_arguments_fail_the_step_naming_the_field() -> None:
    with pytest.raises(StepFailedError) as info:
        run_fan_out(num_gpus=-1)
    assert str(info.value) == (
        "Step 'fan' failed: invalid StepResources: num_gpus: Input should be greater than or equal to 0"
    )


@pytest.mark.ray
def test_layer_5_on_ray_each_shard_reserves_what_the_call_asks(ray_session: None) -> None:
    import ray

    from ray_backend import RayExecutor

    class Reserves(Declares):
        def execute(self, ctx: KitContext) -> StepResult:
            ask = ctx.map(lambda _: ray.get_runtime_context().get_assigned_resources(), [0], num_cpus=0.5)
            default = ctx.map(lambda _: ray.get_runtime_context().get_assigned_resources(), [0])
            ctx.values["assigned"] = (ask, default)
            return StepResult()

    ctx = KitContext(runtime_ctx=RuntimeContext())
    step = Reserves("fan", StepResources(num_cpus=0))  # the step holds no CPU; its shards hold their own
    Orchestrator(registry_of(step), ctx, executor=RayExecutor(ray_config())).execute()
    assert ctx.values["assigned"] == ([{"CPU": 0.5}], [{"CPU": 1.0}])


# --- one model, one validation ----------------------------------------------------------------


def test_the_config_file_options_are_the_same_model() -> None:
    assert issubclass(StepOptions, StepResources) and StepOptions.model_fields.keys() == StepResources.model_fields.keys()
    config = ExecutorConfig(defaults={"num_cpus": 2}, steps={"a": {"rollback_timeout_s": 9}})
    assert isinstance(config.defaults, StepResources) and isinstance(config.steps["a"], StepResources)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_gpus", -1, "Input should be greater than or equal to 0"),
        ("memory", 0, "Input should be greater than 0"),
        ("timeout_s", float("inf"), "Input should be a finite number"),
        ("max_retries", -2, "Input should be greater than or equal to -1"),
        ("nope", 1, "Extra inputs are not permitted"),
    ],
)
def test_a_bad_value_has_the_same_message_in_code_and_in_the_config(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError) as in_code:
        StepResources(**{field: value})
    assert str(in_code.value) == f"invalid StepResources: {field}: {message}"
    with pytest.raises(ConfigError) as in_config:
        load_config(steps={"a": {field: value}})
    assert str(in_config.value) == f"invalid executor configuration: steps.a.{field}: {message}"


def test_a_custom_resource_amount_is_validated_by_name() -> None:
    with pytest.raises(ValueError) as info:
        StepResources(resources={"trainer": -1})
    assert str(info.value) == "invalid StepResources: resources.trainer: Input should be greater than or equal to 0"


def test_a_layer_is_frozen_pickles_and_declares_only_what_it_sets() -> None:
    layer = StepResources(num_cpus=1.0, retry_exceptions=(ConnectionError,))
    assert layer.declared() == {"num_cpus": 1.0, "retry_exceptions": (ConnectionError,)}
    assert pickle.loads(pickle.dumps(layer)) == layer
    with pytest.raises(ValueError, match="frozen"):
        layer.num_cpus = 2  # type: ignore[misc]


def test_resolve_merges_lowest_first_and_gives_each_result_its_own_resources_dict() -> None:
    low, high = StepResources(num_cpus=2, timeout_s=10), StepResources(num_cpus=3)
    merged = resolve(low, None, high)
    assert values(merged, "num_cpus", "timeout_s", "num_gpus") == (3, 10, 0)
    assert resolve().resources is not resolve().resources is not BUILT_IN.resources


def test_a_bad_declaration_fails_an_in_process_run_before_any_step() -> None:
    class BadlyDeclared(KitStep):
        @property
        def resources(self) -> StepResources:
            return StepResources(rollback_timeout_s=0)

    ctx = KitContext(runtime_ctx=RuntimeContext())
    with pytest.raises(ValueError) as info:
        Orchestrator(registry_of("first", BadlyDeclared("bad")), ctx, executor=LocalExecutor()).execute()
    assert str(info.value) == "invalid StepResources: rollback_timeout_s: Input should be greater than 0"
    assert ctx.trail == []


def test_retry_exceptions_can_be_switched_on_from_the_file_but_not_named_there(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("steps:\n  a: {max_retries: 2, retry_exceptions: true}\n")
    resources = load_config(path).resources_for(KitStep("a"))
    assert values(resources, "max_retries", "retry_exceptions") == (2, True)
    path.write_text("steps:\n  a: {retry_exceptions: [ConnectionError]}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"invalid executor configuration in {path}: steps.a.retry_exceptions")
