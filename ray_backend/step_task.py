"""The Ray task that runs one step's ``execute`` or ``rollback`` on a worker.

It rebuilds the context from the snapshot (large fields zero-copy from the object
store), runs the step with a ``WorkerRuntime`` in place of ``runtime_ctx``, and
returns two objects: the committed state (small fields, the result, unsent
events, the node it ran on) and a dict of large values the step changed. Both are
owned by the driver, so they outlive this worker process.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

import ray

from ray_backend import stored_fields
from ray_backend.context_state import build_context, read_state
from ray_backend.runtime_shipping import RuntimeSpec, activate
from ray_backend.stored_fields import NEW_LARGE_VALUE, StoredField
from ray_backend.worker_runtime import WorkerRuntime
from synapse_steps.attempt import run_execute
from synapse_steps.result import StepResult
from synapse_steps.step import BaseStep, rollback


@dataclass(frozen=True)
class RunConstants:
    """What every task of one run shares (passed inline: an ObjectRef argument costs more)."""

    context_cls: type
    env: dict[str, Any]
    job_id: str
    flush_interval_s: float
    actor: ray.actor.ActorHandle
    runtime: RuntimeSpec  # the user's runtime context, rebuilt on the worker


def run_step(
    mode: str,
    step: BaseStep,
    run: RunConstants,
    snapshot: dict[str, Any],
    token: str,
    rollback_of: StepResult | None,
    reraise: tuple[type[BaseException], ...],
) -> tuple[dict[str, Any], dict[str, Any]]:
    node_id = ray.get_runtime_context().get_node_id()
    run.actor.started.remote(token, node_id)
    values = stored_fields.load(snapshot)
    runtime = WorkerRuntime(run.env, run.job_id, run.actor, token, run.flush_interval_s)
    facing = run.runtime.build(runtime)
    ctx = build_context(run.context_cls, values, facing)
    runtime.logger.set_step(ctx.current_step, ctx.current_step_order)  # attribute logger calls to the step
    meta: dict[str, Any] = {"node_id": node_id, "result": None, "error": None, "traceback": None}
    activate(facing)
    try:
        if mode == "execute":
            meta["result"] = run_execute(step, ctx, reraise)
        else:
            try:
                rollback(step, ctx, rollback_of)
            except Exception as exc:  # noqa: BLE001 - reported to the driver, which records it
                meta["error"] = f"{type(exc).__name__}: {exc}"
                meta["traceback"] = traceback.format_exc()
    finally:
        activate(None)
    fields, changed_large = _commit(snapshot, values, ctx)
    meta["fields"] = fields
    meta["events"] = runtime.take_pending()
    meta["batches_sent"] = runtime.batches_sent
    return meta, changed_large


def _commit(
    snapshot: dict[str, Any], loaded: dict[str, Any], ctx: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split the context into small values and large values that changed."""
    fields: dict[str, Any] = {}
    changed_large: dict[str, Any] = {}
    for name, value in read_state(ctx).items():
        before = snapshot.get(name)
        if isinstance(before, StoredField) and value is loaded.get(name) and stored_fields.is_immutable(value):
            fields[name] = before
        elif stored_fields.is_large(value):
            fields[name] = NEW_LARGE_VALUE
            changed_large[name] = value
        else:
            fields[name] = value
    return fields, changed_large
