"""Ray options for step tasks and shard tasks, built in one place from declared resources."""

from __future__ import annotations

from typing import Any

from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from synapse_steps.config import RaySettings
from synapse_steps.fanout import ShardOptions
from synapse_steps.resources import StepResources


def _placement(resources: StepResources) -> dict[str, Any]:
    """The resource part of ``.options()``: what the scheduler places the task by (resolved resources)."""
    options: dict[str, Any] = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus}
    if resources.memory:
        options["memory"] = resources.memory
    if resources.resources:
        options["resources"] = dict(resources.resources)
    if resources.accelerator_type:
        options["accelerator_type"] = resources.accelerator_type
    return options


def step_task_options(
    mode: str, step_name: str, resources: StepResources, settings: RaySettings, node: str | None
) -> dict[str, Any]:
    """Options of one ``execute`` or ``rollback`` task.

    Retries apply to ``execute`` alone (a rollback's retries are the orchestrator's
    ``rollback_retries``, counted there). A rollback goes back to ``node``, the node
    where its step ran, with soft affinity: anywhere it fits if that node is gone.
    """
    execute = mode == "execute"
    options: dict[str, Any] = {
        "name": f"synapse-steps:{mode}:{step_name}",
        "num_returns": 2,
        "max_retries": resources.max_retries if execute else 0,
        "retry_exceptions": _retry_exceptions(resources) if execute else False,
        **_placement(resources),
    }
    if settings.runtime_env:
        options["runtime_env"] = settings.runtime_env
    if node is not None and not execute:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
    return options


def shard_task_options(options: ShardOptions) -> dict[str, Any]:
    """Options of one ``ctx.map`` shard task."""
    return {
        "name": "synapse-steps:shard",
        "max_retries": options.resources.max_retries,
        **_placement(options.resources),
    }


def reraised_exceptions(resources: StepResources) -> tuple[type[BaseException], ...]:
    """The exceptions a worker lets propagate so that Ray retries them (``retry_exceptions``)."""
    retry = resources.retry_exceptions
    if not retry or resources.max_retries == 0:
        return ()
    return retry if isinstance(retry, tuple) else (Exception,)


def _retry_exceptions(resources: StepResources) -> bool | list[type[BaseException]]:
    if isinstance(resources.retry_exceptions, tuple):
        return list(resources.retry_exceptions)
    return bool(resources.retry_exceptions)
