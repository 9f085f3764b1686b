"""The Ray task that runs one step's ``execute`` or ``rollback`` on a worker.

It rebuilds the context from the snapshot (large fields zero-copy from the object
store), runs the step with a ``WorkerRuntime`` in place of ``runtime_ctx`` — which
streams the step's events and context state to the run's context actor while it
runs — and returns a ``TaskReport`` plus a dict of the large values the step
replaced. Both are owned by the driver, so they outlive this worker process.

A cancel (``ray.cancel``: Ctrl-C, a timeout) arrives as ``KeyboardInterrupt``. The
task then commits its latest state to the actor and returns its report marked
``stopped``, so the rollback sees what the step did up to that point.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, replace
from typing import Any

import ray
from ray import cloudpickle

from ray_backend import stored_fields, stored_results
from ray_backend.context_actor import RunChannel
from ray_backend.context_state import build_context
from ray_backend.process_slots import shared
from ray_backend.result_chunks import ChunkedResults, LazyResults
from ray_backend.runtime_shipping import RuntimeSpec, activate
from ray_backend.stored_fields import NewLargeValue, StoredField
from ray_backend.stored_results import STEP_RESULTS, LoadedResults
from ray_backend.task_report import TaskReport
from ray_backend.worker_runtime import WorkerRuntime
from ray_backend.worker_state import WorkerState
from synapse_steps.attempt import run_execute
from synapse_steps.result import StepResult
from synapse_steps.step import BaseStep, rollback

# How long a stopped task waits for the actor to take its final state.
_FINAL_COMMIT_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class RunConstants:
    """What every task of one run shares; it travels once per worker process (``SharedConstants``)."""

    context_cls: type
    env: dict[str, Any]
    job_id: str
    flush_interval_s: float
    channel: RunChannel  # to this run's state in the context actor
    runtime: RuntimeSpec  # the user's runtime context, rebuilt on the worker
    journaled: bool = False  # ctx.commit() waits until the driver journaled the state


@dataclass(frozen=True)
class SharedConstants:
    """A run's ``RunConstants``, put in the object store once and read once per worker process.

    Sent inline, they cost every task ~1.5 ms to serialize on the driver (the context
    class travels by value when workers cannot import it) and again to rebuild on the
    worker. The reference is nested (not a top-level argument), so Ray does not fetch it
    before each task: ``get`` does, the first time a worker process sees the run.
    """

    ref: ray.ObjectRef

    def get(self) -> RunConstants:
        """The run's constants, from this process's cache or the object store."""
        cache: dict[str, RunConstants] = shared().constants
        key = self.ref.hex()
        cached = cache.get(key)
        if cached is None:
            cached = ray.get(self.ref)
            while len(cache) >= _CONSTANTS_CACHED_RUNS:
                del cache[next(iter(cache))]  # the oldest run this worker served
            cache[key] = cached
        return cached


# Runs whose constants a worker process keeps (a worker serves one run at a time, mostly).
_CONSTANTS_CACHED_RUNS = 4


def run_step(
    mode: str,
    step: BaseStep[Any],
    shared: SharedConstants,
    snapshot: dict[str, Any],
    token: str,
    rollback_of: StepResult | None,
    reraise: tuple[type[BaseException], ...],
) -> tuple[TaskReport, dict[str, Any]]:
    """The body of a step's Ray task: rebuild the context, run ``mode``, report outcome and changed fields.

    Exceptions in ``reraise`` propagate so Ray retries them; any other is caught here and reported.
    """
    run = shared.get()
    node_id = ray.get_runtime_context().get_node_id()
    run.channel.send("started", token, node_id)
    values = stored_fields.load(snapshot)
    results = LoadedResults()
    if isinstance(values.get(STEP_RESULTS), ChunkedResults):
        values[STEP_RESULTS] = LazyResults.of(values[STEP_RESULTS], results)
    if rollback_of is not None:
        rollback_of = results.load([rollback_of])[0]
    runtime = WorkerRuntime(run.env, run.job_id, run.channel, token, run.flush_interval_s, journaled=run.journaled)
    facing = run.runtime.build(runtime)  # the user's runtime context, reporting through ``runtime``
    ctx = build_context(run.context_cls, values, facing)
    runtime.logger.set_step(ctx.current_step, ctx.current_step_order)  # attribute logger calls to the step
    state = WorkerState(snapshot, values, ctx, results)
    report = TaskReport(node_id=node_id, fields={})
    runtime.start_shipping(state.live)
    activate(facing)
    try:
        if mode == "execute":
            report.result = run_execute(step, ctx, reraise)
        else:
            try:
                rollback(step, ctx, rollback_of)
            except Exception as exc:  # noqa: BLE001 - the driver records it, as itself
                report.error, report.traceback = _portable(exc), traceback.format_exc()
    except KeyboardInterrupt:  # ray.cancel: a cooperative stop
        report.stopped = True
    finally:
        activate(None)
        runtime.stop_shipping()
    if report.stopped:
        try:
            runtime.ship_now(_FINAL_COMMIT_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - the report below carries the state too
            pass
    report.fields, changed_large = state.final()
    if report.result is not None:
        report.result = stored_results.returned(report.result, changed_large)
    _refuse_unsendable(report, step.name, mode)
    report.events = runtime.take_pending()
    report.batches_sent = runtime.batches_sent
    report.unconfirmed = runtime.take_unconfirmed()
    return report, changed_large


def _refuse_unsendable(report: TaskReport, step_name: str, mode: str) -> None:
    """Fail the step, naming the field, when a value it left in the context cannot be pickled.

    Otherwise Ray fails to send the report back with only "cannot pickle '_thread.lock'
    object". The field keeps the value the driver had; the step's own error, if any, stays first.
    References into the object store are left out (``dumps_without_refs``).
    """
    small = {k: v for k, v in report.fields.items() if not isinstance(v, (StoredField, NewLargeValue))}
    try:
        stored_fields.pickled_fingerprint(small)  # one pass (C pickler first) in the common case; field by field only to name it
        return
    except Exception:  # noqa: BLE001 - pickling raises many types
        pass
    for name, value in small.items():
        try:
            stored_fields.dumps_without_refs(value)
        except Exception as exc:  # noqa: BLE001 - pickling raises many types
            del report.fields[name]
            problem = (
                f"step '{step_name}' left context field '{name}' ({type(value).__name__}) that cannot be sent "
                f"back from the worker: {type(exc).__name__}: {exc}. Keep handles such as locks, sockets and "
                "open files out of the context (create them inside execute())"
            )
            if mode == "execute" and report.result is not None:
                earlier = report.result
                error = problem if earlier.success else f"{earlier.error}; and {problem}"
                report.result = replace(earlier, success=False, error=error)
            elif mode != "execute" and report.error is None:
                report.error = RuntimeError(problem)


def _portable(exc: Exception) -> Exception:
    """The exception itself if it survives a pickle round trip, else a stand-in with its text.

    An exception whose ``__init__`` does not match its ``args`` cannot be unpickled on
    the driver (Ray would hand back an ``UnserializableException``).
    """
    try:
        cloudpickle.loads(cloudpickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(f"{type(exc).__name__}: {exc}")
