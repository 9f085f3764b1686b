"""RayExecutor: each step is a Ray task with its own resources; one context actor per run."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ray_backend import failures
from ray_backend.code_shipping import ship_user_modules
from ray_backend.connection import connect, disconnect
from ray_backend.context_actor import RunState
from ray_backend.preflight import check_serializable
from ray_backend.runtime_shipping import replay, runtime_spec
from ray_backend.step_task import RunConstants, run_step
from ray_backend.task_watch import StartWatch, describe_request, stop_task
from ray_backend.transport import ContextTransport
from synapse_steps.config import ExecutorConfig, load_config
from synapse_steps.context import BaseStepContext
from synapse_steps.errors import StepsError
from synapse_steps.executor import StepExecutor
from synapse_steps.resources import StepResources
from synapse_steps.result import StepResult
from synapse_steps.step import BaseStep

_run_step_task = ray.remote(run_step)


class StepTaskFailed(StepsError, RuntimeError):
    """A step task ended without a result (crash, timeout, cancel); message says which."""

    def __init__(self, message: str, traceback: str | None = None) -> None:
        super().__init__(message, traceback)
        self.traceback = traceback

    def __str__(self) -> str:
        return str(self.args[0])


class RayExecutor(StepExecutor):
    """Runs each step as a Ray task; the caller's context is synced after every step.

    Connects on ``open`` (starting a local Ray when no address is configured, and
    stopping it again on ``close``), creates the run's context actor, checks that the
    context and steps pickle, and ships user modules by value.

    Example:
        >>> from ray_backend import RayExecutor
        >>> orchestrator = Orchestrator(registry, ctx, executor=RayExecutor())  # doctest: +SKIP
    """

    def __init__(self, config: ExecutorConfig | None = None) -> None:
        self._config = config if config is not None else load_config()
        self._settings = self._config.ray
        self._connected = False
        self._actor: ray.actor.ActorHandle | None = None
        self._run_constants: RunConstants | None = None
        self._transport: ContextTransport | None = None
        self._resources: dict[str, StepResources] = {}
        self._nodes: dict[str, str | None] = {}
        self._never_started: set[str] = set()
        self.actor_name: str | None = None

    @property
    def step_nodes(self) -> dict[str, str | None]:
        """Step name → Ray node id where it ran (None: node unknown); rollbacks go back there."""
        return dict(self._nodes)

    def open(self, context: BaseStepContext, steps: Sequence[BaseStep]) -> None:
        self._config.check_step_names([s.name for s in steps])
        self._resources = {s.name: self._config.resources_for(s) for s in steps}
        self._nodes = {}
        self._never_started = set()
        self._connected = connect(self._settings)
        try:
            ship_user_modules()
            check_serializable(context, steps)
            self._start_actor(context)
            self._transport = ContextTransport(context)
        except BaseException:
            self.close()
            raise

    def execute(self, step: BaseStep, context: BaseStepContext) -> StepResult:
        try:
            meta = self._run("execute", step, context, None)
        except StepTaskFailed as exc:
            return StepResult(success=False, error=str(exc), traceback=exc.traceback)
        result = meta["result"]
        return result

    def rollback(self, step: BaseStep, context: BaseStepContext, result: StepResult) -> None:
        if step.name in self._never_started:
            return  # stopped while still queued: it never ran, there is nothing to undo
        meta = self._run("rollback", step, context, result)
        if meta["error"]:
            raise StepTaskFailed(meta["error"], meta["traceback"])

    def close(self) -> None:
        if self._actor is not None:
            ray.kill(self._actor, no_restart=True)
            self._actor = None
            self._run_constants = None
        self._transport = None
        if self._connected:
            self._connected = False
            disconnect(True)

    def _start_actor(self, context: BaseStepContext) -> None:
        self.actor_name = f"synapse-steps-run-{context.runtime_ctx.job_id}-{uuid.uuid4().hex[:8]}"
        # On the driver's node: the run's bookkeeping must not die with a worker node. Hard
        # affinity (it needs no resources, and that node lives as long as the driver): Ray
        # does not honour *soft* affinity to the head node for actors.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self._actor = (
            ray.remote(RunState)
            .options(
                name=self.actor_name, namespace=self._settings.namespace, num_cpus=0, max_restarts=0,
                scheduling_strategy=here,
            )
            .remote()
        )
        self._run_constants = RunConstants(
            type(context), context.runtime_ctx.env, context.runtime_ctx.job_id,
            self._settings.progress_interval_s, self._actor, runtime_spec(context.runtime_ctx, self.actor_name),
        )

    def _replace_dead_actor(self, context: BaseStepContext) -> None:
        """The context actor died: start a new one from the committed state the driver holds.

        Events the running step already sent to the dead actor are lost; its final
        events and its committed context still arrive with its result.
        """
        assert self._transport is not None
        self._start_actor(context)
        assert self._actor is not None
        self._actor.commit.remote(self._transport.version, self._transport.committed)

    def _run(self, mode: str, step: BaseStep, context: BaseStepContext, result: StepResult | None) -> dict[str, Any]:
        """Submit one step task, relay its events while it runs, apply what it committed."""
        assert self._transport is not None and self._actor is not None, "RayExecutor used before open()"
        resources = self._resources[step.name]
        token = f"{mode}:{step.name}:{uuid.uuid4().hex[:8]}"
        meta_ref, changed_ref = _run_step_task.options(**self._task_options(mode, step, resources)).remote(
            mode, step, self._run_constants, self._transport.snapshot(), token, result,
            self._reraise(resources) if mode == "execute" else (),
        )
        meta = self._await(meta_ref, step, mode, token, resources, context)
        self._transport.apply(meta["fields"], changed_ref)
        self._actor.commit.remote(self._transport.version, self._transport.committed)
        return meta

    def _task_options(self, mode: str, step: BaseStep, resources: StepResources) -> dict[str, Any]:
        options: dict[str, Any] = {
            "name": f"synapse-steps:{mode}:{step.name}",
            "num_returns": 2,
            "num_cpus": resources.num_cpus,
            "num_gpus": resources.num_gpus,
            "max_retries": resources.max_retries if mode == "execute" else 0,
            "retry_exceptions": self._retry_exceptions(resources) if mode == "execute" else False,
        }
        if resources.memory:
            options["memory"] = resources.memory
        if resources.resources:
            options["resources"] = dict(resources.resources)
        if resources.accelerator_type:
            options["accelerator_type"] = resources.accelerator_type
        if self._settings.runtime_env:
            options["runtime_env"] = self._settings.runtime_env
        node = self._nodes.get(step.name) if mode == "rollback" else None
        if node is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
        return options

    @staticmethod
    def _retry_exceptions(resources: StepResources) -> bool | list[type[BaseException]]:
        if isinstance(resources.retry_exceptions, tuple):
            return list(resources.retry_exceptions)
        return bool(resources.retry_exceptions)

    @staticmethod
    def _reraise(resources: StepResources) -> tuple[type[BaseException], ...]:
        if resources.max_retries == 0 or not resources.retry_exceptions:
            return ()
        if resources.retry_exceptions is True:
            return (Exception,)
        return tuple(resources.retry_exceptions)

    def _await(
        self, ref: ray.ObjectRef, step: BaseStep, mode: str, token: str, resources: StepResources, context: Any
    ) -> dict[str, Any]:
        """Wait for a step task, relaying its events; enforce the schedule and step time limits.

        Start markers from the worker tell where the task runs (its rollback goes back
        there). If that node dies while Ray holds the task for a retry, the retry must
        start within ``schedule_timeout_s`` too, so a retry that needs a resource only
        the lost node had fails instead of waiting forever. Only a task stopped by the
        schedule timeout before any start marker is known never to have run: that
        step alone is not rolled back.
        """
        watch = StartWatch(time.monotonic())
        try:
            while not ray.wait([ref], timeout=self._settings.progress_interval_s)[0]:
                now = time.monotonic()
                node = watch.update(self._relay(context, token).get(token), now)
                if node is not None:
                    self._nodes[step.name] = node or None
                if resources.timeout_s is not None and now - watch.submitted > resources.timeout_s:
                    stop_task(ref)
                    raise StepTaskFailed(
                        f"step '{step.name}' ({mode}) timed out after {resources.timeout_s:g}s and was cancelled"
                    )
                if watch.node_lost(now):
                    continue
                if watch.waiting_too_long(now, self._settings.schedule_timeout_s):
                    stop_task(ref)
                    if not watch.ever_started:
                        self._never_started.add(step.name)
                    raise StepTaskFailed(self._unschedulable(step, mode, resources, watch.lost_node))
        except KeyboardInterrupt:
            stop_task(ref)
            self._relay(context, token)
            raise
        try:
            meta = ray.get(ref)
        except ray.exceptions.RayError as exc:
            node = self._relay(context, token).get(token)
            if node:
                self._nodes[step.name] = node
            raise StepTaskFailed(*failures.describe(exc, step.name, mode)) from None
        if meta["batches_sent"]:
            self._relay(context, token)
        for event in meta["events"]:
            replay(context.runtime_ctx, event)
        self._nodes[step.name] = meta["node_id"]
        return meta

    def _unschedulable(self, step: BaseStep, mode: str, resources: StepResources, lost_node: str | None) -> str:
        limit = self._settings.schedule_timeout_s
        why = f"its node {lost_node} died and the retry " if lost_node else ""
        return (
            f"step '{step.name}' ({mode}): {why}could not start within {limit:g}s (ray.schedule_timeout_s): "
            f"no node could give it {describe_request(resources)} (none has them, or they stayed in use); "
            f"cluster total: {ray.cluster_resources()}"
        )

    def _relay(self, context: Any, token: str) -> dict[str, str]:
        """Replay the actor's undelivered events into the caller's runtime context.

        Returns the start markers (task token → node id). If the actor died, a new
        one replaces it and the in-flight task ``token`` counts as started on an
        unknown node, since its marker went down with the old actor.
        """
        assert self._actor is not None
        try:
            started, events = ray.get(self._actor.drain.remote())
        except ray.exceptions.RayActorError:
            self._replace_dead_actor(context)
            return {token: ""}
        for event in events:
            replay(context.runtime_ctx, event)
        return started
