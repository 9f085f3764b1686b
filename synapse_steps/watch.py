"""Watching a run: the orchestrator's hooks and runtime events turned into reporter calls.

Shared by the ``synapse-steps`` command and ``action.run(show_progress=True)``. A
reporter (``LiveView``, ``PlainView``, the CLI's JSON lines) gets JSON-ready dicts
and decides how to show them. Every hook and runtime event arrives on the driver's
main thread, also on Ray (the executor replays worker events there), so a reporter
needs no locking.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from synapse_steps.errors import JournalError, RollbackIncompleteError, StepFailedError
from synapse_steps.runtime import RuntimeEvent

if TYPE_CHECKING:
    from synapse_steps.actions.base import BaseAction
    from synapse_steps.orchestrator import Orchestrator, StepRecord
    from synapse_steps.progress import ProgressCallback
    from synapse_steps.result import StepResult


class Reporter(Protocol):
    """Where a run's events go. Values are JSON-ready; ``timestamp`` fields are UTC datetimes."""

    def start(self, info: dict[str, Any]) -> None:
        """The run starts: action, executor, run id, params and the steps with their weights."""

    def progress(self, fraction: float, step: str | None) -> None:
        """Overall progress changed (``fraction`` 0..1); ``step`` is the running step."""

    def step_progress(self, step: str, current: float, total: float) -> None:
        """The running step's own progress changed."""

    def step(self, entry: dict[str, Any]) -> None:
        """A step's status or rollback state changed."""

    def runtime_event(self, event: dict[str, Any]) -> None:
        """A step sent a message, metrics or a log event."""

    def end(self, exit_code: int, summary: dict[str, Any] | None, error: str | None) -> None:
        """The run ended with ``exit_code``; ``summary`` is None when it never started (``error`` says why)."""


@dataclass
class RunWatcher:
    """Turns the orchestrator's hooks and the runtime context's events into reporter calls.

    A ``step`` entry is sent whenever a step's status or rollback state changes: when
    it starts (``before_step``), when it finishes (the progress callback that follows),
    on the orchestrator's step lifecycle events, and at the end of the run.
    ``user_callback`` still gets the seed's ``progress_callback(current, total)``.
    """

    reporter: Reporter
    user_callback: ProgressCallback | None = None
    orchestrator: Orchestrator[Any] | None = None
    steps_started: int = 0
    _seen: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def before_step(self, name: str, ctx: Any) -> None:
        """The orchestrator's hook before each step: report the step as running."""
        self.steps_started += 1
        self.sync()

    def on_progress(self, current: int, total: int) -> None:
        """The seed's progress callback: report overall progress, then call the user's callback."""
        orchestrator = self._orchestrator()
        self.sync()
        self.reporter.progress(round(orchestrator.progress, 4), orchestrator.context.current_step)
        if self.user_callback is not None:
            self.user_callback(current, total)

    def on_event(self, event: RuntimeEvent) -> None:
        """Turn a runtime event into the matching reporter call."""
        orchestrator = self._orchestrator()
        step = event.step or orchestrator.context.current_step
        common = {"step": step, "timestamp": event.timestamp}
        if event.kind == "progress":
            if step is not None:
                self.reporter.step_progress(step, event.data["current"], event.data["total"])
        elif str(event.kind) == "step":
            self.sync()  # a lifecycle event: the records already say what changed
        elif event.kind == "metrics":
            self.reporter.runtime_event({"event": "metrics", **common, "data": event.data})
        elif event.kind == "message":
            message = event.data.get("message", "")
            self.reporter.runtime_event({"event": "message", **common, "level": event.level, "message": message})
        else:
            self.reporter.runtime_event(
                {
                    "event": "log",
                    **common,
                    "name": event.name,
                    "level": event.level,
                    "data": event.data,
                    "file": event.file,
                }
            )

    def sync(self) -> None:
        """Report what changed since the last call: statuses in step order, then rollbacks
        last first (the order they ran in), each as its own entry."""
        records = self._orchestrator().records
        for record in records:
            status, rollback = self._seen.get(record.name, ("pending", None))
            if record.status != status:
                self._seen[record.name] = (record.status, rollback)
                self.reporter.step({**self.entry(record), "rollback": rollback})
        for record in reversed(records):
            status, rollback = self._seen.get(record.name, ("pending", None))
            if record.rollback != rollback:
                self._seen[record.name] = (status, record.rollback)
                self.reporter.step(self.entry(record))

    def entry(self, record: StepRecord) -> dict[str, Any]:
        """The reporter's ``step`` entry for a record: status, rollback state, node, duration, error."""
        orchestrator = self._orchestrator()
        nodes = getattr(orchestrator.executor, "step_nodes", None)
        if record.status in ("pending", "skipped"):
            node = None  # never ran anywhere
        else:
            node = "local" if nodes is None else nodes.get(record.name) or None
        duration = None if record.duration_s is None else round(record.duration_s, 3)
        result = self._result_of(record)
        names = [r.name for r in orchestrator.records]
        return {
            "step": record.name,
            "order": names.index(record.name) + 1,
            "of": len(names),
            "status": record.status,
            "duration_s": duration,
            "node": node,
            "rollback": record.rollback,
            "data": result.data if result else None,
            "error": result.error if result else None,
        }

    def _result_of(self, record: StepRecord) -> StepResult | None:
        """The step's result: results are appended in step order, one per finished step."""
        orchestrator = self._orchestrator()
        finished = [r for r in orchestrator.records if r.status not in ("pending", "running")]
        results: list[StepResult] = orchestrator.context.step_results
        if record not in finished or finished.index(record) >= len(results):
            return None
        return results[finished.index(record)]

    def _orchestrator(self) -> Orchestrator[Any]:
        assert self.orchestrator is not None, "RunWatcher.orchestrator is set before the run starts"
        return self.orchestrator


def start_info(action: BaseAction[Any, Any], orchestrator: Orchestrator[Any], target: str | None) -> dict[str, Any]:
    """What a reporter's ``start`` gets: the action, executor, run id, params and steps."""
    return {
        "target": target,
        "action": type(action).__name__,
        "executor": action.config.executor,
        "job_id": orchestrator.context.runtime_ctx.job_id,
        "params": action.params.model_dump(mode="json"),
        "steps": [{"name": s.name, "weight": s.progress_weight} for s in orchestrator.registry.get_steps()],
    }


def watch_run(
    action: BaseAction[Any, Any],
    reporter: Reporter,
    *,
    target: str | None = None,
    exit_code_of: Callable[[BaseException | None], int] | None = None,
    watcher: RunWatcher | None = None,
    start: Callable[[Orchestrator[Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run ``action`` with every event sent to ``reporter``; return ``run()``'s summary or raise as it does.

    ``reporter.end(code, summary, error)`` is called before any exception propagates;
    ``exit_code_of(exc)`` maps the outcome to ``code`` (default: 0 success, 1 otherwise).
    Errors while building the steps or the executor propagate before ``start``.
    ``watcher`` (optional) lets a caller see ``steps_started`` while the run goes.
    ``start(orchestrator)`` runs it (default ``execute()``; the CLI's ``resume`` and
    ``rollback`` pass ``resume``/``rollback_run``).
    """
    watcher = watcher or RunWatcher(reporter, user_callback=action.progress_callback)
    orchestrator = action.build_orchestrator(watcher.on_progress, watcher.before_step)
    watcher.orchestrator = orchestrator
    code_of = exit_code_of or (lambda exc: 0 if exc is None else 1)
    reporter.start(start_info(action, orchestrator, target))
    context = orchestrator.context
    subscribe = getattr(context.runtime_ctx, "subscribe", None)  # a custom runtime may not offer it
    unsubscribe = subscribe(watcher.on_event) if subscribe is not None else (lambda: None)
    started = time.monotonic()
    outcome: dict[str, Any] = {"failed_step": None, "error": None, "rollback_errors": [], "traceback": None}
    failure: BaseException | None = None
    result: dict[str, Any] = {}
    try:
        result = orchestrator.execute() if start is None else start(orchestrator)
    except StepFailedError as exc:
        failure = exc
        outcome.update(
            failed_step=exc.step_name, error=str(exc), rollback_errors=exc.rollback_errors, traceback=exc.traceback
        )
    except KeyboardInterrupt as exc:
        failure = exc
        outcome.update(error=f"interrupted ({str(exc) or 'Ctrl-C'})")
    except RollbackIncompleteError as exc:
        failure = exc
        cause = exc.cause
        outcome.update(error=str(exc), failed_step=cause.step_name if isinstance(cause, StepFailedError) else None)
    except JournalError as exc:
        if any(r.status != "pending" for r in orchestrator.records):
            failure = exc
            outcome.update(error=str(exc))
        else:  # refused before any step ran (a take-over lost to another process): one line, no table
            reporter.end(code_of(exc), None, str(exc))
            raise
    except Exception as exc:  # noqa: BLE001 - reported like any failure, then re-raised
        failure = exc
        outcome.update(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    finally:
        unsubscribe()
    watcher.sync()
    records = orchestrator.records
    if failure is None:
        counts = result
    else:
        ran = [r for r in records if r.status in ("succeeded", "failed")]
        counts = {"success": False, "steps_executed": len(ran), "steps_total": len(records)}
    summary = {
        **counts,
        "duration_s": round(time.monotonic() - started, 3),
        **outcome,
        "rolled_back": [r.name for r in reversed(records) if r.rollback in ("done", "failed")],
        "rollback_errors": [
            f"Rollback failed for step '{r.name}': {r.rollback_error}" for r in reversed(records) if r.rollback == "failed"
        ],
        "not_rolled_back": [r.name for r in reversed(records) if r.rollback == "not run"],
        "steps": [watcher.entry(r) for r in records],
        "metrics": {str(k): v for k, v in context.runtime_ctx.metrics.items()},
    }
    reporter.end(code_of(failure), summary, outcome["error"])
    if failure is not None:
        raise failure
    return result
