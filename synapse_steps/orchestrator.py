"""Runs a registry's steps in order with weighted progress and reverse rollback.

The rollback is an exit stack (``contextlib.ExitStack``): every step that was
dispatched is undone, last first, one at a time, whatever ended the run — a failed
step, an interrupt (between steps, in a hook, in a callback, during start-up), a
callback that raised. A rollback that fails is recorded and the rest still run;
signals during the rollback do not cut it short (see ``interrupts``) unless the
user insists, and then the run says exactly what was not undone.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from os import PathLike
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from synapse_steps.config import ExecutorConfig, load_config
from synapse_steps.context import BaseStepContext
from synapse_steps.context_state import write_state
from synapse_steps.errors import CallbackError, RollbackIncompleteError, StepFailedError
from synapse_steps.executor import StepExecutor
from synapse_steps.executor_factory import build_executor
from synapse_steps.interrupts import InterruptGuard, RollbackAbandoned, guarded_run
from synapse_steps.progress import ProgressCallback, WeightedProgress, validate_weights
from synapse_steps.registry import StepRegistry
from synapse_steps.result import StepResult
from synapse_steps.runtime import RuntimeEvent, runtime_has_listeners
from synapse_steps.step import BaseStep, can_skip

if TYPE_CHECKING:
    from synapse_steps.journal.opening import JournalSpec
    from synapse_steps.journal.recorder import RunRecorder
    from synapse_steps.journal.records import RunDetail, StepAttempt

C = TypeVar("C", bound=BaseStepContext)
BeforeStepHook = Callable[[str, Any], None]


@dataclass
class StepRecord:
    """What happened to one step in the last run, for summaries (CLI table, logs).

    ``status``: ``pending`` (never reached), ``running``, ``succeeded``, ``skipped``
    or ``failed``. ``duration_s`` covers the step alone, never its rollback.
    ``rollback``: ``None`` (no rollback reached this step), ``done``, ``failed``
    (``rollback_error`` holds the exception; from a Ray worker its ``__cause__`` is
    the worker's traceback), ``not needed`` (the step never started, so there is
    nothing to undo) or ``not run`` (the rollback was abandoned before it got here).
    """

    name: str
    status: str = "pending"
    duration_s: float | None = None
    rollback: str | None = None
    rollback_error: BaseException | None = None
    rollback_duration_s: float | None = None


class _StepFailure(Exception):
    """Internal: step ``order`` failed with ``result``; unwinding starts."""

    def __init__(self, order: int, result: StepResult) -> None:
        super().__init__(order, result)
        self.order = order
        self.result = result


class Orchestrator(Generic[C]):
    """Execute steps in order; on the first failure roll back every executed step.

    ``progress_callback(current, total)`` receives whole percents out of 100 as the
    weighted overall progress moves; ``progress`` holds the exact fraction.
    ``before_step(name, ctx)`` runs on the caller's side before each step's skip check.
    ``executor`` decides where steps run (default: in this process).

    ``journal`` makes the run durable (see "Runs, resume and rollback after a crash"
    in the README): a URL (``sqlite:///runs.db``, ``postgresql+psycopg://...``), an
    open ``Journal``, ``True`` for the per-user default, or ``False``; None takes the
    config's ``journal`` (``SYNAPSE_STEPS_JOURNAL``), by default none. ``target`` and
    ``params`` are journaled so ``synapse-steps resume`` can rebuild the run (an
    action fills them in); the run id is ``context.runtime_ctx.job_id``.

    Example:
        >>> orchestrator = Orchestrator(registry, context)   # doctest: +SKIP
        >>> orchestrator.execute()                           # doctest: +SKIP
        {'success': True, 'steps_executed': 3, 'steps_total': 3}
    """

    def __init__(
        self,
        registry: StepRegistry[C],
        context: C,
        progress_callback: ProgressCallback | None = None,
        before_step: BeforeStepHook | None = None,
        *,
        executor: StepExecutor | None = None,
        journal: JournalSpec = None,
        target: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self._registry = registry
        self._context = context
        self._progress_callback = progress_callback
        self._before_step = before_step
        self._executor = executor if executor is not None else self._default_executor()
        self._tracker = WeightedProgress([])
        self._steps: list[BaseStep[C]] = []
        self._results: dict[int, StepResult] = {}
        self._dispatched: list[int] = []
        self._callback_fault: CallbackError | None = None
        self._journal = journal if journal is not None else load_config().journal
        self._target = target or ""
        self._params = dict(params or {})
        self._recorder: RunRecorder | None = None
        self._resumed: dict[int, StepResult] = {}  # steps a resumed run does not run again
        self.records: list[StepRecord] = []

    @classmethod
    def from_config(
        cls,
        registry: StepRegistry[C],
        context: C,
        config: ExecutorConfig | str | PathLike[str] | None = None,
        progress_callback: ProgressCallback | None = None,
        before_step: BeforeStepHook | None = None,
    ) -> Orchestrator[C]:
        """An orchestrator whose executor comes from configuration (file, env, or model).

        With ``config=None`` the settings come from ``SYNAPSE_STEPS_*`` environment
        variables alone, so ``SYNAPSE_STEPS_EXECUTOR=ray`` moves a run onto Ray.
        """
        settings = config if isinstance(config, ExecutorConfig) else load_config(config)
        executor = build_executor(settings)
        return cls(registry, context, progress_callback, before_step, executor=executor, journal=settings.journal or False)

    def _default_executor(self) -> StepExecutor:
        """In-process, unless ``SYNAPSE_STEPS_EXECUTOR`` (and friends) say otherwise.

        So the seed's plain ``Orchestrator(registry, context)`` moves onto Ray by
        setting one environment variable, like an action's ``run()``.
        """
        return build_executor(load_config())

    @property
    def registry(self) -> StepRegistry[C]:
        """The steps this orchestrator runs, in order."""
        return self._registry

    @property
    def context(self) -> C:
        """The shared context the steps read and write; after a run it holds the final state."""
        return self._context

    @property
    def executor(self) -> StepExecutor:
        """Where the steps run: the one passed in, the config's, or the default for this orchestrator."""
        return self._executor

    @property
    def run_id(self) -> str:
        """The run's id: ``context.runtime_ctx.job_id``, also its key in the journal."""
        return str(self._context.runtime_ctx.job_id)

    @property
    def progress(self) -> float:
        """Overall weighted progress of the current or last run, 0.0 to 1.0."""
        return self._tracker.overall

    def execute(self) -> dict[str, Any]:
        """Run every step. Returns a summary.

        Raises ``StepFailedError`` after rolling back, ``KeyboardInterrupt`` (Ctrl-C,
        SIGTERM, SIGHUP) after rolling back, ``RollbackIncompleteError`` when the
        rollback was abandoned by a third signal, or ``JournalError`` when the journal
        refused the run (before any step ran).
        """
        self._steps = self._registry.get_steps()
        self._recorder = self._start_recorder()
        return self._execute()

    def resume(self, run_id: str, *, force: bool = False) -> dict[str, Any]:
        """Finish a journaled run whose driver died: the steps that succeeded are not run again.

        Takes the run over (exactly one of several concurrent callers wins), restores
        the last context it committed (the in-flight step's last ``ctx.commit()``, if
        it made one: what it already did, e.g. a checkpoint to continue from or the
        files it uploaded), skips the steps that succeeded or were skipped, and runs
        the rest — the in-flight step runs again
        (steps are at-least-once: use ``ctx.idempotency_key`` for side effects). The
        registry must be the one the run started with (same names, classes, weights),
        unless ``force``. Raises ``JournalError`` (nothing changed) for an unknown,
        live or finished run; then as ``execute``.
        """
        from synapse_steps.journal.opening import take_over_recorder

        self._steps = self._registry.get_steps()
        recorder, detail = take_over_recorder(
            self._journal, run_id, self._steps, force=force, node_of=self._node_of, blobs=self._journal_blobs()
        )
        try:
            restored = recorder.journal.load_context(run_id)
            if restored:
                write_state(self._context, restored)
            self._context.runtime_ctx.job_id = run_id
            orders = {step.name: order for order, step in enumerate(self._steps)}
            self._resumed = {
                orders[name]: journaled_result(recorder.journal, run_id, detail.last_attempt(name))
                for name in detail.succeeded_steps()
                if name in orders
            }
        except BaseException as exc:
            recorder.finish(exc)
            raise
        self._recorder = recorder
        try:
            return self._execute()
        finally:
            self._resumed = {}

    def rollback_run(self, run_id: str, *, force: bool = False) -> dict[str, Any]:
        """Undo a journaled run whose driver died (or whose rollback was abandoned).

        Every step that started and has no recorded rollback outcome is rolled back,
        last first, each against the context it had committed (its own last commit);
        each outcome is journaled once, so calling this twice undoes nothing twice.
        Returns ``{"success": True, "action": "rollback", "run_id", "rolled_back",
        "steps_executed": 0, "steps_total"}`` (``rolled_back``: last first); raises
        ``RollbackIncompleteError`` when a rollback failed or was abandoned, and
        ``JournalError`` (nothing changed) for an unknown, live or finished run.
        """
        from synapse_steps.journal.opening import take_over_recorder

        self._steps = self._registry.get_steps()
        recorder, detail = take_over_recorder(
            self._journal, run_id, self._steps, force=force, node_of=self._node_of, blobs=self._journal_blobs()
        )
        self._context.runtime_ctx.job_id = run_id
        self.records = [StepRecord(step.name) for step in self._steps]
        for record in self.records:
            attempt = detail.last_attempt(record.name)
            if attempt is not None:
                record.status = attempt.status.value.lower() if attempt.status.value != "STARTED" else "failed"
        self._results, self._dispatched = {}, []
        orders = {step.name: order for order, step in enumerate(self._steps)}
        pending = detail.pending_rollbacks()
        failure: BaseException | None = None
        errors: list[str] = []
        exceptions: list[BaseException] = []
        self._recorder = recorder
        try:
            with guarded_run() as guard, recorder.alive():
                try:
                    self._executor.open(self._context, self._steps)
                    guard.install()
                    guard.unwinding()  # from here on, signals never cut a rollback short
                    not_run = self._undo(pending, orders, detail, guard, errors, exceptions)
                finally:
                    self._context._set_current_step(None)
                    self._executor.close()
            undone = [name for name in pending if name not in orders or name in not_run]
            failed = [r.name for r in self.records if r.rollback == "failed"]
            if undone or failed:
                failure = RollbackIncompleteError(
                    f"rollback of run {run_id!r} incomplete: "
                    + "; ".join([*errors, *(f"step '{n}' not rolled back" for n in undone)]),
                    undone,
                    None,
                    None,
                )
                raise failure
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._recorder = None
            recorder.finish(failure, after_crash=True)
        done = [r.name for r in reversed(self.records) if r.rollback == "done"]
        return {
            "success": True,
            "action": "rollback",
            "run_id": run_id,
            "rolled_back": done,
            "steps_executed": 0,
            "steps_total": len(self._steps),
        }

    def _undo(
        self,
        pending: list[str],
        orders: dict[str, int],
        detail: RunDetail,
        guard: InterruptGuard,
        errors: list[str],
        exceptions: list[BaseException],
    ) -> list[str]:
        """``rollback_run``'s loop: each pending step against its own committed state; returns those not run."""
        assert self._recorder is not None
        journal, run_id = self._recorder.journal, detail.run_id
        not_run: list[str] = []
        for name in pending:
            if name not in orders:
                continue  # gone from the registry (``force``): reported as not rolled back
            order, attempt = orders[name], detail.last_attempt(name)
            record = self.records[order]
            if guard.abandon:
                record.rollback = "not run"
                not_run.append(name)
                self._journal_rollback(name, "not run")
                continue
            state = journal.load_context(run_id, attempt.context_seq if attempt else None)
            if state:
                write_state(self._context, state)
            self._results[order] = journaled_result(journal, run_id, attempt)
            try:
                self._rollback_one(self._steps[order], order, errors, exceptions)
            except (RollbackAbandoned, KeyboardInterrupt) as exc:
                guard.abandon = True
                record.rollback, record.rollback_error = "failed", exc
                not_run.append(name)
                self._journal_rollback(name, "not run", exc)
        return not_run

    def _start_recorder(self) -> RunRecorder | None:
        if self._journal is None or self._journal is False:
            return None
        from synapse_steps.journal.opening import start_recorder

        executor: dict[str, Any] = {"class": f"{type(self._executor).__module__}:{type(self._executor).__qualname__}"}
        config = getattr(self._executor, "config", None)
        if isinstance(config, ExecutorConfig):  # what ``resume RUN_ID`` runs with again
            executor["config"] = config.model_dump(mode="json", exclude={"journal", "journal_blobs"}, fallback=_qualified)
        return start_recorder(
            self._journal,
            run_id=self.run_id,
            target=self._target,
            params=self._params,
            steps=self._steps,
            executor=executor,
            node_of=self._node_of,
            blobs=self._journal_blobs(),
        )

    def _journal_blobs(self) -> str | None:
        config = getattr(self._executor, "config", None)
        return config.journal_blobs if isinstance(config, ExecutorConfig) else None

    def _node_of(self, step: str) -> str | None:
        nodes = getattr(self._executor, "step_nodes", None)
        return "local" if nodes is None else nodes.get(step)

    def _execute(self) -> dict[str, Any]:
        runtime = self._context.runtime_ctx
        self._tracker = WeightedProgress(validate_weights(self._steps), self._notify_progress)
        self._results = {}
        self._dispatched = []
        self._callback_fault = None
        if hasattr(runtime, "callback_error"):
            runtime.callback_error = None
        self.records = [StepRecord(step.name) for step in self._steps]
        subscribe = getattr(runtime, "subscribe", None)  # optional: any runtime with the SDK's interface runs
        unsubscribe = subscribe(self._on_event) if callable(subscribe) else None
        recorder, failure = self._recorder, None
        on_commit = getattr(runtime, "on_commit", None)
        uncommit = on_commit(recorder.committed) if recorder is not None and callable(on_commit) else None
        try:
            with guarded_run() as guard, recorder.alive() if recorder is not None else nullcontext():
                self._run_all(guard)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if uncommit is not None:
                uncommit()
            if unsubscribe is not None:
                unsubscribe()
            if recorder is not None:
                self._recorder = None
                metrics = getattr(runtime, "metrics", None)
                recorder.finish(failure, metrics={str(k): v for k, v in metrics.items()} if metrics else None)
        return {"success": True, "steps_executed": len(self._dispatched), "steps_total": len(self._steps)}

    def _run_all(self, guard: InterruptGuard) -> None:
        ctx = self._context
        try:
            self._executor.open(ctx, self._steps)  # may start Ray: an interrupt here has nothing to undo
            guard.install()  # again: ray.init installs handlers of its own
            for order, step in enumerate(self._steps):
                self._raise_if_interrupted(guard)
                if order in self._resumed:
                    self._restore_done(order)
                    continue
                ctx._set_current_step(step.name, order)
                self._tracker.begin(order)
                self._run_one(step, order)
            self._raise_if_interrupted(guard)
        except BaseException as failure:  # noqa: BLE001 - every way out of the loop unwinds
            self._unwind(failure, guard)
        finally:
            ctx._set_current_step(None)
            self._executor.close()

    @staticmethod
    def _raise_if_interrupted(guard: InterruptGuard) -> None:
        """A signal whose ``KeyboardInterrupt`` was swallowed (by a hook, say) still ends the run."""
        if guard.interrupted:
            raise KeyboardInterrupt(guard.reason)

    def _run_one(self, step: BaseStep[C], order: int) -> None:
        record = self.records[order]
        record.status = "running"
        self._lifecycle(step.name, "started")
        started = time.monotonic()
        try:
            if self._before_running(step, order):
                result = StepResult(success=True, skipped=True)
            else:
                if self._recorder is not None:
                    self._recorder.step_started(step.name, order)  # durable before the step can do anything
                self._dispatched.append(order)  # from here on, a failure rolls this step back
                try:
                    result = self._executor.execute(step, self._context)
                except Exception as exc:  # noqa: BLE001 - a callback or executor fault fails the step
                    result = self._fault_result(exc)
            fault = self._fault()
            if fault is not None:
                result = self._fault_result(fault, keep=result)
            if result.success:
                try:
                    self._tracker.finish(order)
                except CallbackError as exc:
                    result = self._fault_result(exc, keep=result)
        finally:
            record.duration_s = time.monotonic() - started
        self._keep(order, result)
        if not result.success:
            raise _StepFailure(order, result)

    def _keep(self, order: int, result: StepResult) -> None:
        self._context.step_results.append(result)
        self._results[order] = result
        status = "skipped" if result.skipped else "succeeded" if result.success else "failed"
        self.records[order].status = status
        if self._recorder is not None:
            with self._journal_tolerated(result.success):
                if result.skipped:
                    self._recorder.step_skipped(self.records[order].name, order, self._context)
                else:
                    self._recorder.step_finished(self.records[order].name, result, self._context)
        self._lifecycle(self.records[order].name, status, error=result.error)

    @contextmanager
    def _journal_tolerated(self, strict: bool) -> Iterator[None]:
        """A journal write that fails while the run is already failing must not hide the failure."""
        from synapse_steps.errors import JournalError

        try:
            yield
        except JournalError as exc:
            if strict:
                raise
            sys.stderr.write(f"synapse-steps: the run journal did not record a step outcome: {exc}\n")

    def _restore_done(self, order: int) -> None:
        """A step that succeeded (or was skipped) before a resumed run's crash: counted, not run again."""
        result = self._resumed[order]
        self._results[order] = result
        record = self.records[order]
        record.status = "skipped" if result.skipped else "succeeded"
        if not result.skipped:
            self._dispatched.append(order)  # a later failure still rolls it back
        self._tracker.begin(order)
        self._tracker.finish(order)

    def _fault(self) -> CallbackError | None:
        """The first callback or subscriber that raised during this run (even if a step swallowed it)."""
        subscriber_fault = getattr(self._context.runtime_ctx, "callback_error", None)
        return self._callback_fault or (subscriber_fault if isinstance(subscriber_fault, CallbackError) else None)

    def _fault_result(self, exc: BaseException, keep: StepResult | None = None) -> StepResult:
        """A failed result naming a driver-side fault (callback) or an executor error."""
        if isinstance(exc, CallbackError):
            error = str(exc)
        else:
            error = f"executor error: {type(exc).__name__}: {exc}"
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        previous = keep or StepResult()
        return StepResult(
            success=False, error=error, traceback=text, data=previous.data, rollback_data=previous.rollback_data
        )

    def _before_running(self, step: BaseStep[C], order: int) -> bool:
        """Run the ``before_step`` hook and the skip check; an error in either fails the step."""
        ctx = self._context
        stage = "before_step hook"
        try:
            if self._before_step is not None:
                self._before_step(step.name, ctx)
            stage = "can_skip"
            return can_skip(step, ctx)
        except Exception as exc:  # noqa: BLE001 - fails this step the way execute would
            error = f"{stage} raised {type(exc).__name__}: {exc}"
            result = StepResult(success=False, error=error, traceback=traceback.format_exc())
            self.records[order].rollback = "not needed"  # it never ran
            self._keep(order, result)
            raise _StepFailure(order, result) from None

    def _unwind(self, failure: BaseException, guard: InterruptGuard) -> None:
        """Roll back every dispatched step, last first; then raise the run's outcome."""
        self._tracker.halt()
        guard.unwinding()
        self._close_interrupted_step(failure, guard)
        errors: list[str] = []
        exceptions: list[BaseException] = []
        not_run: list[str] = []
        abandoned: str | None = None
        for order in reversed(self._dispatched):
            step, record = self._steps[order], self.records[order]
            if guard.abandon or isinstance(failure, RollbackAbandoned) or abandoned is not None:
                record.rollback = "not run"
                not_run.append(step.name)
                self._journal_rollback(step.name, "not run")
                self._lifecycle(step.name, "rollback_not_run")
                continue
            if self._executor.never_started(step):
                record.rollback = "not needed"
                self._journal_rollback(step.name, "not needed")
                self._lifecycle(step.name, "rollback_not_needed")
                continue
            try:
                self._rollback_one(step, order, errors, exceptions)
            except (RollbackAbandoned, KeyboardInterrupt) as exc:
                # While unwinding, signals are never raised as interrupts: a KeyboardInterrupt
                # here is the abandon signal as Ray's C++ wait re-raises it (message lost).
                guard.abandon = True
                record.rollback, record.rollback_error = "failed", exc
                abandoned = step.name
                self._journal_rollback(step.name, "not run", exc)  # cut short: `rollback RUN_ID` redoes it
                self._lifecycle(step.name, "rollback_failed", error=str(exc))
        self._raise_outcome(failure, guard.reason, abandoned, not_run, errors, exceptions)

    def _close_interrupted_step(self, failure: BaseException, guard: InterruptGuard) -> None:
        """A step still ``running`` was cut off by an interrupt: give it a failed result."""
        for order, record in enumerate(self.records):
            if record.status != "running":
                continue
            dispatched = order in self._dispatched
            where = "while the step was running" if dispatched else "before the step started"
            reason = str(failure) if isinstance(failure, (KeyboardInterrupt, RollbackAbandoned)) else ""
            result = StepResult(success=False, error=f"interrupted {where} ({reason or guard.reason})")
            if not dispatched:
                record.rollback = "not needed"
            self._keep(order, result)

    def _rollback_one(self, step: BaseStep[C], order: int, errors: list[str], exceptions: list[BaseException]) -> None:
        """One step's rollback under its policy: up to ``1 + rollback_retries`` tries."""
        ctx, record = self._context, self.records[order]
        ctx._set_current_step(step.name, order)
        self._lifecycle(step.name, "rollback_started")
        if self._recorder is not None:
            self._recorder.rollback_started(step.name)
        tries = 1 + (self._executor.resources_for(step).rollback_retries or 0)
        started = time.monotonic()
        last: Exception | None = None
        try:
            for _ in range(tries):
                try:
                    self._executor.rollback(step, ctx, self._results[order])
                except Exception as exc:  # noqa: BLE001 - best effort: keep unwinding
                    last = exc
                else:
                    last = None
                    break
        finally:
            record.rollback_duration_s = time.monotonic() - started
        if last is None:
            record.rollback = "done"
            self._journal_rollback(step.name, "done")
            self._lifecycle(step.name, "rollback_done")
            return
        message = f"Rollback failed for step '{step.name}': {last}"
        ctx.errors.append(message)
        errors.append(message)
        exceptions.append(last)
        record.rollback, record.rollback_error = "failed", last
        self._journal_rollback(step.name, "failed", last)
        self._lifecycle(step.name, "rollback_failed", error=str(last))

    def _journal_rollback(self, step: str, outcome: str, error: BaseException | None = None) -> None:
        if self._recorder is not None:
            self._recorder.rollback_finished(step, outcome, error)

    def _raise_outcome(
        self,
        failure: BaseException,
        reason: str,
        abandoned: str | None,
        not_run: list[str],
        errors: list[str],
        exceptions: list[BaseException],
    ) -> None:
        cause: BaseException = failure
        if isinstance(failure, _StepFailure):
            name = self._steps[failure.order].name
            cause = StepFailedError(
                f"Step '{name}' failed: {failure.result.error}", name, failure.result, errors, exceptions
            )
        if abandoned is not None or not_run:
            undone = ([abandoned] if abandoned else []) + not_run
            what = "a step failure" if isinstance(cause, StepFailedError) else f"an interrupt ({cause})"
            raise RollbackIncompleteError(
                f"rollback incomplete: abandoned by a third signal after {what}; not undone: {', '.join(undone)}",
                not_run,
                abandoned,
                cause,
            ) from cause
        if cause is failure:
            if isinstance(failure, KeyboardInterrupt) and not failure.args:
                failure.args = (reason,)  # Ray's C++ wait re-raises a bare KeyboardInterrupt
            raise failure
        raise cause from None

    def _notify_progress(self, current: int, total: int) -> None:
        if self._recorder is not None:
            self._recorder.progress(self._tracker.overall, self._context.current_step)
        if self._progress_callback is None:
            return
        try:
            self._progress_callback(current, total)
        except Exception as exc:
            self._callback_fault = self._callback_fault or CallbackError(
                f"progress_callback raised {type(exc).__name__}: {exc}"
            )
            raise self._callback_fault from exc

    def _lifecycle(self, step: str, phase: str, **data: Any) -> None:
        """Tell subscribers what happened to a step; a subscriber that raises fails the run later."""
        runtime = self._context.runtime_ctx
        if not runtime_has_listeners(runtime):
            return  # the orchestrator's own subscription alone: skip building events (P1)
        record = getattr(runtime, "record", None)
        if not callable(record):
            return
        try:
            record(RuntimeEvent("step", step, {"phase": phase, **data}))
        except CallbackError as exc:
            self._callback_fault = self._callback_fault or exc

    def _on_event(self, event: RuntimeEvent) -> None:
        ctx = self._context
        if event.kind == "progress" and event.step is not None and event.step == ctx.current_step:
            order = ctx.current_step_order
            if order is not None:
                self._tracker.update(order, event.data["current"], event.data["total"])


def _qualified(value: Any) -> str:
    """How a config value JSON cannot hold is journaled: an exception class as ``module:Name``."""
    return f"{value.__module__}:{value.__qualname__}" if isinstance(value, type) else repr(value)


def journaled_result(journal: Any, run_id: str, attempt: StepAttempt | None) -> StepResult:
    """The result a journaled attempt ended with (its rollback needs its ``rollback_data``).

    The context committed with an attempt's outcome ends with that result in
    ``step_results``; a step cut off by the driver's death has none, and gets a failed one.
    """
    if attempt is not None and attempt.status.value == "SKIPPED":
        return StepResult(success=True, skipped=True)
    if attempt is not None and attempt.status.value != "STARTED" and attempt.context_seq is not None:
        state = journal.load_context(run_id, attempt.context_seq) or {}
        results = state.get("step_results") or []
        if results:
            return results[-1]  # type: ignore[no-any-return]
    step = attempt.step if attempt is not None else "?"
    return StepResult(success=False, error=f"the driver of run {run_id} stopped while step '{step}' was running")
