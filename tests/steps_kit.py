"""Small steps and a context used across tests (importable only from tests/, so on Ray
they also exercise code shipping by value)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from synapse_steps import BaseStep, BaseStepContext, RuntimeContext, StepRegistry, StepResult


@dataclass
class KitContext(BaseStepContext):
    """Records what ran where: (action, step name, pid) tuples, plus free-form values."""

    trail: list[tuple[str, str, int]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


class KitStep(BaseStep[KitContext]):
    """A configurable step: weight, skip, failure mode, progress ticks."""

    def __init__(
        self,
        name: str,
        weight: float = 1.0,
        *,
        skip: bool = False,
        fail: str | None = None,
        rollback_fails: bool = False,
        ticks: int = 0,
        sets: dict[str, Any] | None = None,
    ) -> None:
        self._name = name
        self._weight = weight
        self._skip = skip
        self._fail = fail
        self._rollback_fails = rollback_fails
        self._ticks = ticks
        self._sets = sets or {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def progress_weight(self) -> float:
        return self._weight

    def can_skip(self, ctx: KitContext) -> bool:
        return self._skip

    def execute(self, ctx: KitContext) -> StepResult:
        ctx.trail.append(("execute", self._name, os.getpid()))
        for i in range(1, self._ticks + 1):
            ctx.set_progress(i, self._ticks)
        ctx.values.update(self._sets)
        if self._fail == "raise":
            raise ValueError(f"{self._name} exploded")
        if self._fail == "result":
            return StepResult(success=False, error=f"{self._name} said no", rollback_data={"by": self._name})
        return StepResult(data={"step": self._name}, rollback_data={"undo": self._name})

    def rollback(self, ctx: KitContext, result: StepResult) -> None:
        ctx.trail.append(("rollback", self._name, os.getpid()))
        ctx.values.setdefault("rollback_results", []).append((self._name, result.success, result.rollback_data))
        if self._rollback_fails:
            raise OSError(f"{self._name} rollback broke")


def registry_of(*steps: BaseStep[Any] | str) -> StepRegistry[Any]:
    """A registry of ``steps`` in order; a name stands for ``KitStep(name)``."""
    registry: StepRegistry[Any] = StepRegistry()
    for step in steps:
        registry.register(KitStep(step) if isinstance(step, str) else step)
    return registry


def new_ctx(job_id: str = "kit") -> KitContext:
    """A fresh ``KitContext`` with its own runtime context."""
    return KitContext(runtime_ctx=RuntimeContext(job_id=job_id))


def context_actors() -> list[tuple[str, str]]:
    """``(name, namespace)`` of this driver's context actors alive in the connected Ray, sorted.

    Through Ray's public ``list_named_actors``: ``ray.util.state`` would need the
    dashboard, which the tests' Ray does not start. A killed actor's name is gone at once.
    """
    import ray

    from ray_backend.runs_actor import NAME_PREFIX

    mine = f"{NAME_PREFIX}{ray.get_runtime_context().get_job_id()}-"
    return sorted(
        (actor["name"], actor["namespace"])
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith(mine)
    )


def open_runs() -> list[str]:
    """Keys of the runs whose state this driver's context actors still hold, sorted."""
    import ray

    keys: list[str] = []
    for name, namespace in context_actors():
        try:
            keys += ray.get(ray.get_actor(name, namespace=namespace).open_runs.remote(), timeout=10)
        except (ValueError, ray.exceptions.RayError):
            continue  # killed or replaced meanwhile: it holds no run any more
    return sorted(keys)
