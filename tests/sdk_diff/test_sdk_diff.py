"""Differential suite: each scenario runs on synapse-sdk's orchestrator, on this package's
in-process executor and on Ray, and every observable must match — except the documented
improvements listed in the README's "Differences from synapse-sdk", which are asserted here
as exactly what the README says.

Needs Python >= 3.12 and ``synapse-sdk`` (``pip install synapse-sdk``); ``.ci/run`` runs it in a
second virtualenv when a Python 3.12 interpreter is found.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from typing import Any

import pytest

if sys.version_info < (3, 12) or importlib.util.find_spec("synapse_sdk") is None:
    pytest.skip(
        "SDK DIFFERENTIAL SUITE NOT RUN: it needs Python >= 3.12 with synapse-sdk installed "
        f"(this is Python {sys.version.split()[0]}, synapse-sdk "
        f"{'present' if importlib.util.find_spec('synapse_sdk') else 'absent'}); see .ci/run",
        allow_module_level=True,
    )

from tests.sdk_diff.harness import OUR_KIT, SDK_KIT, SDK_OBJECTS_KIT, Kit, Observed, observe
from tests.sdk_diff.scenarios import SCENARIOS

pytestmark = pytest.mark.timeout(180)

_reference: dict[str, Observed] = {}


def reference(name: str) -> Observed:
    """The scenario on synapse-sdk itself (computed once per scenario)."""
    if name not in _reference:
        _reference[name] = observe(SCENARIOS[name], SDK_KIT, "sdk")
    return _reference[name]


def assert_documented_differences(sdk: Observed, got: Observed, registry_steps_with_proportion: int) -> None:
    """What may differ, and only as the README's table says."""
    # 1. Failure raises StepFailedError, a RuntimeError subclass, with the SDK's exact message.
    if sdk.outcome[0] == "raised RuntimeError":
        assert (sdk.exception_type, got.exception_type) == ("RuntimeError", "StepFailedError")
    # 2. A failed rollback's entry in ctx.errors is the SDK's text followed by ": <cause>".
    assert sdk.error_causes == [""] * len(sdk.errors)
    assert all(got.error_causes), got.error_causes
    # 3. progress_callback: the SDK calls (100, 100) after each step with progress_proportion > 0;
    #    here it gets the weighted overall percent out of 100 whenever it changes, ending at 100 on success.
    assert sdk.callback == [(100, 100)] * registry_steps_with_proportion
    percents = [current for current, _ in got.callback]
    assert all(total == 100 for _, total in got.callback) and percents == sorted(percents)
    assert (percents[-1:] == [100]) == (got.outcome[0] == "returned")


def steps_with_proportion(sdk: Observed) -> int:
    return len(sdk.callback)


def rolled_back_step(event: tuple[Any, ...]) -> tuple[Any, ...]:
    """4. An event logged by a rollback is attributed to the step being rolled back (the SDK
    attributes it to the step that failed). LoggingStep's ``step_rollback`` names the wrapped step."""
    name, _, level, data = event
    return (name, f"logged_{data['step']}", level, data) if name == "step_rollback" else event


def compare(name: str, kit: Kit, runner: str) -> None:
    sdk = reference(name)
    sdk = dataclasses.replace(sdk, events=[rolled_back_step(e) for e in sdk.events])
    got = observe(SCENARIOS[name], kit, runner)
    assert got.outcome == sdk.outcome
    assert got.step_results == sdk.step_results
    assert got.errors == sdk.errors
    assert got.trail == sdk.trail
    assert got.values == sdk.values
    assert got.events == sdk.events
    assert got.progress == sdk.progress
    assert got.user_failure_message_emitted == sdk.user_failure_message_emitted
    assert_documented_differences(sdk, got, steps_with_proportion(sdk))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_in_process_matches_the_sdk(name: str) -> None:
    compare(name, OUR_KIT, "local")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_sdk_objects_on_our_orchestrator_match_the_sdk(name: str) -> None:
    """synapse-sdk's step classes, StepResult and RuntimeContext, unchanged, run by this package."""
    compare(name, SDK_OBJECTS_KIT, "local")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_on_ray_matches_the_sdk(name: str, ray_session: None) -> None:
    compare(name, OUR_KIT, "ray")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_sdk_objects_on_ray_match_the_sdk(name: str, ray_session: None) -> None:
    compare(name, SDK_OBJECTS_KIT, "ray")


# --- the remaining rows of the README's table, side by side --------------------------------
def _sdk_and_ours(scenario: Any) -> list[tuple[Any, Any, Any]]:
    """(package name, registry, context) for synapse-sdk and for this package."""
    return [("sdk", *scenario(SDK_KIT)), ("ours", *scenario(OUR_KIT))]


def _run(package: str, registry: Any, ctx: Any) -> None:
    import synapse_sdk.plugins.steps as sdk_steps

    import synapse_steps

    if package == "sdk":
        sdk_steps.Orchestrator(registry, ctx, progress_callback=lambda c, t: None).execute()
    else:
        synapse_steps.Orchestrator(registry, ctx, executor=synapse_steps.LocalExecutor()).execute()


def test_can_skip_raising_rolls_back_here_and_propagates_in_the_sdk() -> None:
    from tests.sdk_diff.scenarios import scripted

    def build(kit: Kit) -> tuple[Any, Any]:
        class BadSkip(kit.BaseStep):  # type: ignore[name-defined,misc]
            name, progress_weight = "bad", 1.0

            def can_skip(self, context: Any) -> bool:
                raise KeyError("flag")

            def execute(self, context: Any) -> Any:
                return kit.StepResult()

        registry = kit.StepRegistry()
        registry.register(scripted(kit, "a"))
        registry.register(BadSkip())
        return registry, kit.Context(runtime_ctx=kit.runtime({}))

    (_, sdk_registry, sdk_ctx), (_, our_registry, our_ctx) = _sdk_and_ours(build)
    with pytest.raises(KeyError):
        _run("sdk", sdk_registry, sdk_ctx)
    assert sdk_ctx.trail == ["can_skip a", "execute a"]
    with pytest.raises(RuntimeError, match=r"^Step 'bad' failed: can_skip raised KeyError: 'flag'$"):
        _run("ours", our_registry, our_ctx)
    assert our_ctx.trail == ["can_skip a", "execute a", "rollback a {'undo': 'a'}"]


def test_empty_exception_message_is_named_here() -> None:
    from tests.sdk_diff.scenarios import scripted

    def build(kit: Kit) -> tuple[Any, Any]:
        registry = kit.StepRegistry()
        registry.register(scripted(kit, "a", run=(_raise_empty,)))
        return registry, kit.Context(runtime_ctx=kit.runtime({}))

    errors = {}
    for package, registry, ctx in _sdk_and_ours(build):
        with pytest.raises(RuntimeError):
            _run(package, registry, ctx)
        errors[package] = ctx.step_results[-1].error
    assert errors == {"sdk": "", "ours": "ValueError"}


def _raise_empty(context: Any) -> None:
    raise ValueError()


def test_duplicate_names_are_rejected_here_and_accepted_by_the_sdk() -> None:
    import synapse_steps
    from tests.sdk_diff.scenarios import scripted

    sdk_registry = SDK_KIT.StepRegistry()
    sdk_registry.register(scripted(SDK_KIT, "a"))
    sdk_registry.register(scripted(SDK_KIT, "a"))
    assert len(sdk_registry) == 2
    our_registry = OUR_KIT.StepRegistry()
    our_registry.register(scripted(OUR_KIT, "a"))
    with pytest.raises(synapse_steps.StepDefinitionError, match="a step named 'a' is already registered"):
        our_registry.register(scripted(OUR_KIT, "a"))
