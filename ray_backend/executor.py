"""RayExecutor: each step is a Ray task with its own resources; the run's state lives in the context actor."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import ray

from ray_backend import failures, runs_actor
from ray_backend.code_shipping import ship_user_modules
from ray_backend.connection import connect, disconnect
from ray_backend.context_actor import RunChannel
from ray_backend.preflight import check_serializable
from ray_backend.runtime_shipping import replay, runtime_spec
from ray_backend.step_task import RunConstants, SharedConstants, run_step
from ray_backend.task_options import reraised_exceptions, step_task_options
from ray_backend.task_report import TaskReport
from ray_backend.task_watch import StartWatch, describe_request, stop_task
from ray_backend.transport import ContextTransport
from ray_backend.worker_runtime import COMMIT_EVENT
from synapse_steps import interrupts
from synapse_steps.config import ExecutorConfig, load_config
from synapse_steps.context import BaseStepContext
from synapse_steps.errors import CallbackError, RemoteTraceback, RollbackTimeoutError, StepsError
from synapse_steps.executor import StepExecutor
from synapse_steps.resources import StepResources
from synapse_steps.result import StepResult
from synapse_steps.step import BaseStep

_run_step_task = ray.remote(run_step)
_log = logging.getLogger("synapse_steps.ray")


class StepTaskFailed(StepsError, RuntimeError):
    """A step task ended without a result (crash, timeout, cancel); message says which."""

    def __init__(self, message: str, traceback: str | None = None, timed_out: bool = False) -> None:
        super().__init__(message, traceback, timed_out)
        self.traceback = traceback
        self.timed_out = timed_out

    def __str__(self) -> str:
        return str(self.args[0])


class _Stop(Exception):
    """Internal: the wait loop decided to stop the task (time limit, unschedulable)."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class RayExecutor(StepExecutor):
    """Runs each step as a Ray task; the caller's context is synced after every step.

    Connects on ``open`` (starting a local Ray when no address is configured, and
    stopping it again on ``close``), opens the run's state in the context actor this
    driver shares between its runs (``runs_actor``), checks that the context and steps
    pickle, and ships user modules by value.

    Example:
        >>> from ray_backend import RayExecutor
        >>> orchestrator = Orchestrator(registry, ctx, executor=RayExecutor())  # doctest: +SKIP
    """

    def __init__(self, config: ExecutorConfig | None = None) -> None:
        self._config = config if config is not None else load_config()
        self._settings = self._config.ray
        self._connected = False
        self._actor: runs_actor.SharedActor | None = None
        self._channel: RunChannel | None = None  # this run's state in that actor
        self._run_constants: SharedConstants | None = None
        self._transport: ContextTransport | None = None
        self._resources: dict[str, StepResources] = {}
        self._nodes: dict[str, str | None] = {}
        self._never_started: set[str] = set()
        self._pending_drain: tuple[ray.ObjectRef, float] | None = None  # (drain call, when it was sent)
        self._last_commit = 0.0  # when the actor last got the base snapshot
        self._commit_owed = False  # the driver's base is newer than the actor's (see ``_commit``)
        self.actor_name: str | None = None  # the context actor holding this run's state (shared by runs)
        self.run_key: str | None = None  # this run's key there

    @property
    def config(self) -> ExecutorConfig:
        """The configuration this executor was built from (journaled with a run)."""
        return self._config

    @property
    def step_nodes(self) -> dict[str, str | None]:
        """Step name → Ray node id where it ran (None: node unknown); rollbacks go back there."""
        return dict(self._nodes)

    def resources_for(self, step: BaseStep[Any]) -> StepResources:
        """What the step runs with: the config's layers resolved once at ``open``, or now for a step outside the run."""
        return self._resources.get(step.name) or self._config.resources_for(step)

    def never_started(self, step: BaseStep[Any]) -> bool:
        """True when no task of the step ever started, so its rollback would have nothing to undo."""
        return step.name in self._never_started

    def open(self, context: BaseStepContext, steps: Sequence[BaseStep[Any]]) -> None:
        """Resolve every step's resources and connect to Ray before the first step, so bad config fails early."""
        self._config.check_step_names([s.name for s in steps])
        self._resources = {s.name: self._config.resources_for(s) for s in steps}
        self._nodes = {}
        self._never_started = set()
        try:
            self._connected = connect(self._settings)
            ship_user_modules()
            check_serializable(context, steps)
            self.run_key = f"synapse-steps-run-{context.runtime_ctx.job_id}-{uuid.uuid4().hex[:8]}"
            self._use_actor(context, runs_actor.acquire(self._settings.namespace, self._settings.actor_timeout_s))
            self._transport = ContextTransport(context)
        except BaseException:
            self.close()
            raise

    def execute(self, step: BaseStep[Any], context: BaseStepContext) -> StepResult:
        """Run ``execute`` as a Ray task; a task that fails, times out or is lost comes back as a failed result."""
        try:
            report = self._run("execute", step, context, None)
        except StepTaskFailed as exc:
            return StepResult(success=False, error=str(exc), traceback=exc.traceback)
        if report.result is None:  # stopped by someone else's cancel
            return StepResult(success=False, error=f"step '{step.name}' (execute) was stopped")
        return report.result

    def rollback(self, step: BaseStep[Any], context: BaseStepContext, result: StepResult) -> None:
        """Run ``rollback`` as a Ray task.

        Raises:
            Exception: the rollback's own exception, with the worker's traceback as its cause.
            RollbackTimeoutError: the rollback ran past ``rollback_timeout_s`` and was stopped.
            StepTaskFailed: the task itself failed (worker lost, actor gone).
        """
        try:
            report = self._run("rollback", step, context, result)
        except StepTaskFailed as exc:
            if exc.timed_out:
                raise RollbackTimeoutError(str(exc)) from None
            raise
        if report.error is not None:
            error = report.error
            error.__cause__ = RemoteTraceback(report.traceback or "")
            raise error

    def close(self) -> None:
        """Drop the run's state from the context actor and disconnect from Ray if ``open`` connected.

        The actor stays for the driver's next run; it ends with the driver's connection
        (a local Ray this run started stops; a joined cluster stays up).
        """
        if self._actor is not None and self._channel is not None:
            self._actor.handle.close.remote(self._channel.run)
            runs_actor.release(self._actor, self._settings.actor_idle_s)
            self._actor = self._channel = None
            self._run_constants = None
        self._transport = None
        self._pending_drain = None
        if self._connected:
            self._connected = False
            disconnect(True)

    def _use_actor(self, context: BaseStepContext, actor: runs_actor.SharedActor) -> None:
        """Keep this run's state in ``actor``: the channel to it travels in the run's constants."""
        assert self.run_key is not None
        self._actor, self.actor_name = actor, actor.name
        self._channel = RunChannel(actor.handle, self.run_key)
        constants = RunConstants(
            type(context), context.runtime_ctx.env, context.runtime_ctx.job_id,
            self._settings.progress_interval_s, self._channel, runtime_spec(context.runtime_ctx, self.run_key),
            journaled=bool(getattr(context.runtime_ctx, "commits_observed", False)),
        )
        self._run_constants = SharedConstants(ray.put(constants))

    def _replace_actor(self, context: BaseStepContext) -> None:
        """The context actor died or froze: a new one gets the committed state the driver holds.

        Events and live state the running step already sent to the old actor are
        lost; its final events and its committed context still arrive with its result.
        The first run to notice starts the new actor; the others find it (``runs_actor.replace``).
        """
        assert self._transport is not None and self._actor is not None
        self._pending_drain = None
        self._use_actor(context, runs_actor.replace(self._actor))
        self._commit()

    def _ask_actor(self, method: str, context: BaseStepContext, *args: Any) -> Any:
        """One call to the context actor, bounded by ``ray.actor_timeout_s``; None if it had to be replaced."""
        assert self._channel is not None
        return self._answer(self._channel.send(method, *args), context)

    def _answer(self, call: ray.ObjectRef, context: BaseStepContext) -> Any:
        """The context actor's answer to ``call``, bounded by ``ray.actor_timeout_s``; None if it had to be replaced.

        The time limit counts from when the actor is up: its start (a new process, slow
        on a busy machine) gets ``runs_actor.START_TIMEOUT_S``.
        """
        assert self._actor is not None
        try:
            if not ray.wait([self._actor.ready], timeout=runs_actor.START_TIMEOUT_S)[0]:
                raise ray.exceptions.GetTimeoutError("the context actor did not start")
            return ray.get(call, timeout=self._settings.actor_timeout_s)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            self._replace_actor(context)
            return None

    def _run(self, mode: str, step: BaseStep[Any], context: BaseStepContext, result: StepResult | None) -> TaskReport:
        """Submit one step task, relay its events while it runs, apply what it committed."""
        assert self._transport is not None and self._actor is not None, "RayExecutor used before open()"
        if runs_actor.replaced(self._actor):  # another run found it dead: this step gets the new one
            self._replace_actor(context)
        resources = self._resources[step.name]
        token = f"{mode}:{step.name}:{uuid.uuid4().hex[:8]}"
        options = step_task_options(mode, step.name, resources, self._settings, self._nodes.get(step.name))
        reraise = reraised_exceptions(resources) if mode == "execute" else ()
        sent = self._transport.result_by_reference(result) if result is not None else None
        report_ref, changed_ref = _run_step_task.options(**options).remote(
            mode, step, self._run_constants, self._transport.snapshot(), token, sent, reraise
        )
        report = self._await(report_ref, changed_ref, step, mode, token, resources, context)
        self._take_state(report, changed_ref, context, token)
        if report.result is not None:
            report.result = self._transport.receive_result(report.result, changed_ref)
        return report

    def _await(
        self,
        ref: ray.ObjectRef,
        changed_ref: ray.ObjectRef,
        step: BaseStep[Any],
        mode: str,
        token: str,
        resources: StepResources,
        context: BaseStepContext,
    ) -> TaskReport:
        """Wait for a step task; whatever ends the wait early stops the task first.

        A time limit, an unschedulable task, an interrupt or a callback that raised
        while events were replayed: the task is cancelled (then killed after a grace)
        and confirmed stopped, and its latest state is in ``context``, before the
        exception leaves — so the rollback never overlaps the step.
        """
        guard = interrupts.current()
        try:
            self._watch(ref, step, mode, token, resources, context, guard)
        except BaseException as exc:
            with guard.critical():
                stopped = stop_task(ref, guard)
                self._take_state(stopped, changed_ref, context, token)
            if isinstance(exc, _Stop):
                raise StepTaskFailed(str(exc), timed_out=exc.timed_out) from None
            raise
        try:
            report: TaskReport = ray.get(ref)
            return report
        except ray.exceptions.RayError as exc:
            with guard.critical():
                self._take_state(None, changed_ref, context, token)
            raise StepTaskFailed(*failures.describe(exc, step.name, mode)) from None

    def _watch(
        self,
        ref: ray.ObjectRef,
        step: BaseStep[Any],
        mode: str,
        token: str,
        resources: StepResources,
        context: BaseStepContext,
        guard: interrupts.InterruptGuard,
    ) -> None:
        """Relay events until the task is done; raise ``_Stop`` when it must be stopped.

        Start markers from the worker tell where the task runs (its rollback goes back
        there). If that node dies while Ray holds the task for a retry, the retry must
        start within ``schedule_timeout_s`` too, so a retry that needs a resource only
        the lost node had fails instead of waiting forever. Only a task stopped by the
        schedule timeout before any start marker is known never to have run.
        """
        limit = resources.timeout_s if mode == "execute" else resources.rollback_timeout_s
        watch = StartWatch(time.monotonic())
        while not ray.wait([ref], timeout=self._settings.progress_interval_s)[0]:
            now = time.monotonic()
            node = watch.update(self._poll(context, token, now), now)
            if node is not None:
                self._nodes[step.name] = node or None
            if mode == "execute" and guard.interrupted:
                raise KeyboardInterrupt(guard.reason)  # a signal that arrived where it could not be raised
            if mode == "rollback":
                guard.check_abandon()
            if limit is not None and now - watch.submitted > limit:
                what = "timeout_s" if mode == "execute" else "rollback_timeout_s"
                raise _Stop(f"step '{step.name}' ({mode}) timed out after {limit:g}s ({what}) and was stopped", True)
            if watch.node_lost(now):
                continue
            if watch.waiting_too_long(now, self._settings.schedule_timeout_s):
                if not watch.ever_started:
                    self._never_started.add(step.name)
                raise _Stop(self._unschedulable(step, mode, resources, watch.lost_node))

    def _take_state(
        self, report: TaskReport | None, changed_ref: ray.ObjectRef | None, context: BaseStepContext, token: str
    ) -> None:
        """Make the caller's context hold the task's latest state, and replay its remaining events.

        With a report, the state it ended with; without one (crashed, killed), the
        live state it last streamed to the actor. The actor then gets the new base (``_commit``).
        """
        assert self._transport is not None
        failing = report is None or report.stopped
        replayed = False  # this task's batches were replayed from its copies, not drained
        if report is None:
            started = self._relay(context, token, tolerant=True).get(token)
            if started:
                self._nodes[step_name_of(token)] = started
            live = self._ask_actor("live", context, token)
            if live:
                self._transport.apply(live, None)
        else:
            events = report.events
            if report.batches_sent and (report.unconfirmed is None or self._actor_up(time.monotonic())):
                self._relay(context, token, tolerant=failing)
            else:  # no batch, or all shipped while the actor was starting (and it still is): none was delivered
                self._pending_drain = None
                replayed = bool(report.batches_sent)
                events = (report.unconfirmed or []) + events
            self._transport.apply(report.fields, changed_ref)
            self._replay(context, events, tolerant=failing)
            self._nodes[step_name_of(token)] = report.node_id
        self._commit(token, urgent=report is None or report.stopped or bool(report.batches_sent), replayed=replayed)

    def _commit(self, done_token: str | None = None, urgent: bool = False, replayed: bool = False) -> None:
        """Give the actor the new base snapshot: at once if ``urgent``, else at most once per ``progress_interval_s``.

        A step that streamed or failed left live state in the actor, which this drops
        at once (``replayed``: and its batches, see ``RunState.commit``). After a short
        step that did not, the call (~0.5 ms on the driver, as much as the step itself)
        waits: ``_poll`` sends it with its next drain, so the actor's base is at most one
        interval behind the driver while a step runs.
        """
        assert self._channel is not None and self._transport is not None
        now = time.monotonic()
        if urgent or done_token is None or now - self._last_commit >= self._settings.progress_interval_s:
            self._channel.send("commit", self._transport.version, self._transport.committed, done_token, replayed)
            self._last_commit, self._commit_owed = now, False
        else:
            self._commit_owed = True

    def _unschedulable(self, step: BaseStep[Any], mode: str, resources: StepResources, lost_node: str | None) -> str:
        limit = self._settings.schedule_timeout_s
        why = f"its node {lost_node} died and the retry " if lost_node else ""
        return (
            f"step '{step.name}' ({mode}): {why}could not start within {limit:g}s (ray.schedule_timeout_s): "
            f"no node could give it {describe_request(resources)} (none has them, or they stayed in use); "
            f"cluster total: {ray.cluster_resources()}"
        )

    def _poll(self, context: BaseStepContext, token: str, now: float) -> str | None:
        """The wait loop's relay, which never waits for the actor: task ``token``'s start marker, if news.

        Takes the answer to the drain sent one tick earlier, if it came, and sends the
        next. So the actor's start (a new process) overlaps the first step instead of
        delaying it; an actor silent for ``ray.actor_timeout_s`` is replaced, as in
        ``_relay`` (the marker then reads "": started, node unknown).
        """
        assert self._actor is not None
        if self._pending_drain is not None:
            call, sent = self._pending_drain
            if not ray.wait([call], timeout=0)[0]:
                if not self._actor_up(now):
                    self._pending_drain = (call, now)  # the time limit counts from when it is up
                    return None
                if now - sent <= self._settings.actor_timeout_s:
                    return None
                self._replace_actor(context)
                return ""
            self._pending_drain = None
            drained = self._answer(call, context)
            if drained is None:
                return ""
            started: dict[str, str]
            started, events = drained
            self._deliver(context, token, events, tolerant=False)
            self._send_drain(now)
            return started.get(token)
        self._send_drain(now)
        return None

    def _send_drain(self, now: float) -> None:
        """Ask the actor for what workers sent (answered by a later ``_poll``), after a commit still owed."""
        assert self._channel is not None
        if self._commit_owed:
            self._commit()
        self._pending_drain = (self._channel.send("drain"), now)

    def _actor_up(self, now: float) -> bool:
        """Whether the actor's process is up (see ``runs_actor.SharedActor.up``)."""
        assert self._actor is not None
        return self._actor.up(now)

    def _relay(self, context: BaseStepContext, token: str, tolerant: bool = False) -> dict[str, str]:
        """Replay the actor's undelivered events into the caller's runtime context, waiting for them.

        Returns the start markers (task token → node id). A drain ``_poll`` sent is
        answered first (order). If the actor died or froze, a new one replaces it and
        the in-flight task ``token`` counts as started on an unknown node, since its
        marker went with the old actor. ``tolerant``: the run is already failing, so a
        callback that raises again is not raised.
        """
        pending, self._pending_drain = self._pending_drain, None
        if pending is not None:
            drained = self._answer(pending[0], context)
            if drained is None:
                return {token: ""}
            self._deliver(context, token, drained[1], tolerant)
        drained = self._ask_actor("drain", context)
        if drained is None:
            return {token: ""}
        started: dict[str, str]
        started, events = drained
        self._deliver(context, token, events, tolerant)
        return started

    def _deliver(self, context: BaseStepContext, token: str, events: list[Any], tolerant: bool) -> None:
        """Replay drained events; a worker's ``ctx.commit()`` among them is journaled, then acknowledged."""
        commits = [e.data["n"] for e in events if e.kind == COMMIT_EVENT]
        self._replay(context, events, tolerant)
        if commits:
            self._journal_commit(context, token, max(commits))

    def _journal_commit(self, context: BaseStepContext, token: str, number: int) -> None:
        """A worker's ``ctx.commit()``: its state into the caller's context, the journal, then the ack."""
        assert self._transport is not None
        live = self._ask_actor("live", context, token)
        if live:
            self._transport.apply(live, None)
        commit = getattr(context.runtime_ctx, "commit_context", None)
        if callable(commit):
            commit(context)
        if self._channel is not None:
            self._channel.send("journaled", token, number)

    @staticmethod
    def _replay(context: BaseStepContext, events: list[Any], tolerant: bool) -> None:
        for event in events:
            if event.kind == COMMIT_EVENT:
                continue  # a marker for the driver (see ``_journal_commit``), not a user event
            try:
                replay(context.runtime_ctx, event)
            except CallbackError:
                if not tolerant:
                    raise
                _log.debug("a callback raised again while the failing run replayed events", exc_info=True)


def step_name_of(token: str) -> str:
    """The step name inside a task token ``mode:name:nonce``."""
    return token.split(":", 1)[1].rsplit(":", 1)[0]
