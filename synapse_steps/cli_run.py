"""One ``synapse-steps run``: execute an action's steps and report what happens.

The CLI builds the ``Orchestrator`` itself (rather than calling ``action.run()``) so it
can pass its own ``progress_callback`` and ``before_step`` hooks and read
``orchestrator.records`` and ``executor.step_nodes`` for the summary. Every hook and
runtime event arrives on the driver's main thread, also on Ray (the executor replays
worker events there), so a reporter needs no locking.
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Protocol

from synapse_steps.actions.base import BaseAction
from synapse_steps.errors import StepFailedError, StepsError
from synapse_steps.orchestrator import Orchestrator, StepRecord
from synapse_steps.result import StepResult
from synapse_steps.runtime import RuntimeEvent

# Exit statuses of ``synapse-steps run`` (also documented in the README).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class Reporter(Protocol):
    """Where a run's events go: a live progress bar, or JSON lines. Values are JSON-ready."""

    def start(self, info: dict[str, Any]) -> None: ...
    def progress(self, fraction: float, step: str | None) -> None: ...
    def step(self, entry: dict[str, Any]) -> None: ...
    def runtime_event(self, event: dict[str, Any]) -> None: ...
    def end(self, exit_code: int, summary: dict[str, Any] | None, error: str | None) -> None: ...


class RunWatcher:
    """Turns the orchestrator's hooks and the runtime context's events into reporter calls.

    A ``step`` event is sent whenever a step's status or rollback state changes: when
    it starts (``before_step``), when it finishes (the progress callback that follows),
    and at the end of the run (statuses, rollbacks).
    """

    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter
        self._seen: dict[str, tuple[str, str | None]] = {}
        self.orchestrator: Orchestrator[Any] | None = None

    def before_step(self, name: str, ctx: Any) -> None:
        self.sync()

    def on_progress(self, current: int, total: int) -> None:
        assert self.orchestrator is not None
        self.sync()
        self._reporter.progress(round(self.orchestrator.progress, 4), self.orchestrator.context.current_step)

    def on_event(self, event: RuntimeEvent) -> None:
        if event.kind == "progress":
            return  # followed through the weighted progress callback instead
        assert self.orchestrator is not None
        step = event.step or self.orchestrator.context.current_step
        if event.kind == "metrics":
            self._reporter.runtime_event({"event": "metrics", "step": step, "data": event.data})
        elif event.kind == "message":
            message = event.data.get("message", "")
            self._reporter.runtime_event({"event": "message", "step": step, "level": event.level, "message": message})
        else:
            self._reporter.runtime_event(
                {
                    "event": "log",
                    "step": step,
                    "name": event.name,
                    "level": event.level,
                    "data": event.data,
                    "file": event.file,
                }
            )

    def sync(self) -> None:
        assert self.orchestrator is not None
        for record in self.orchestrator.records:
            state = (record.status, record.rollback)
            if record.status != "pending" and self._seen.get(record.name) != state:
                self._seen[record.name] = state
                self._reporter.step(self.entry(record))

    def entry(self, record: StepRecord) -> dict[str, Any]:
        assert self.orchestrator is not None
        nodes = getattr(self.orchestrator.executor, "step_nodes", None)
        if record.status in ("pending", "skipped"):
            node = None  # never ran anywhere
        else:
            node = "local" if nodes is None else nodes.get(record.name) or None
        duration = None if record.duration_s is None else round(record.duration_s, 3)
        result = self._result_of(record)
        return {
            "step": record.name,
            "status": record.status,
            "duration_s": duration,
            "node": node,
            "rollback": record.rollback,
            "data": result.data if result else None,
            "error": result.error if result else None,
        }

    def _result_of(self, record: StepRecord) -> StepResult | None:
        """The step's ``StepResult.data``: results are appended in step order, one per finished step."""
        assert self.orchestrator is not None
        finished = [r for r in self.orchestrator.records if r.status not in ("pending", "running")]
        results = self.orchestrator.context.step_results
        if record not in finished or finished.index(record) >= len(results):
            return None
        return results[finished.index(record)]


def run_action(
    action: BaseAction, orchestrator: Orchestrator[Any], watcher: RunWatcher, reporter: Reporter, target: str
) -> int:
    """Run the action's steps on ``executor``; report start, progress, steps, events and the end.

    ``orchestrator`` comes from ``action.build_orchestrator`` with ``watcher``'s hooks.
    Returns the exit status: 0 success,
    1 a step failed (rolled back) or the run broke, 2 the run could not start (a
    ``StepsError`` before the first step, e.g. an unreachable Ray address), 130 Ctrl-C.
    """
    context = orchestrator.context
    registry = orchestrator.registry
    watcher.orchestrator = orchestrator
    reporter.start(
        {
            "target": target,
            "action": type(action).__name__,
            "executor": action.config.executor,
            "job_id": context.runtime_ctx.job_id,
            "params": action.params.model_dump(mode="json"),
            "steps": [{"name": s.name, "weight": s.progress_weight} for s in registry.get_steps()],
        }
    )
    unsubscribe = context.runtime_ctx.subscribe(watcher.on_event)
    started = time.monotonic()
    outcome: dict[str, Any] = {"failed_step": None, "error": None, "rollback_errors": [], "traceback": None}
    try:
        result = orchestrator.execute()
        code = EXIT_OK
    except StepFailedError as exc:
        code = EXIT_FAILED
        outcome.update(
            failed_step=exc.step_name, error=str(exc), rollback_errors=exc.rollback_errors, traceback=exc.traceback
        )
    except KeyboardInterrupt as exc:
        code = EXIT_INTERRUPTED
        outcome.update(error=f"interrupted ({exc or 'Ctrl-C'}); executed steps were rolled back")
    except StepsError as exc:
        code = EXIT_USAGE
        outcome.update(error=str(exc))
    except Exception as exc:  # noqa: BLE001 - reported like any failure, with its traceback
        code = EXIT_FAILED
        outcome.update(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    finally:
        unsubscribe()
    watcher.sync()
    records = orchestrator.records
    if code == EXIT_OK:
        counts = result
    else:
        ran = [r for r in records if r.status in ("succeeded", "failed")]
        counts = {"success": False, "steps_executed": len(ran), "steps_total": len(records)}
    summary = {
        **counts,
        "duration_s": round(time.monotonic() - started, 3),
        **outcome,
        "rolled_back": [r.name for r in reversed(records) if r.rollback is not None],
        "steps": [watcher.entry(r) for r in records],
        "metrics": {str(k): v for k, v in context.runtime_ctx.metrics.items()},
    }
    reporter.end(code, summary, outcome["error"])
    return code
