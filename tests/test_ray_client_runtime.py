"""The user's runtime context on Ray workers: attributes arrive, unpicklable ones are named or
rebuilt by ``worker_factories``, and logger calls come back in order, attributed to the step."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from synapse_steps import (
    BaseStep,
    BaseStepContext,
    ContextNotSerializableError,
    Orchestrator,
    RuntimeContext,
    StepExecutor,
    StepRegistry,
    StepResult,
)
from tests.conftest import ray_config

pytestmark = pytest.mark.timeout(120)


@dataclass
class ClientContext(BaseStepContext):
    seen: list[Any] = field(default_factory=list)


class StubClient:
    """Picklable: it travels to the worker as a copy."""

    def __init__(self, name: str) -> None:
        self.name = name

    def create_model(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"id": 7, "by": self.name, **data}


class UsesClient(BaseStep[ClientContext]):
    """An SDK-style step: everything through ``runtime_ctx``."""

    name = "upload"
    progress_weight = 1.0

    def execute(self, context: ClientContext) -> StepResult:
        rt = context.runtime_ctx
        rt.logger.info("uploading")
        model = rt.client.create_model({"name": "m"})
        rt.logger.set_progress(1, 2)
        rt.logger.warning("slow backend")
        rt.log_metric("upload", "bytes", 10)
        rt.logger.error("retrying once")
        rt.logger.set_progress(2, 2)
        context.seen.append((model, rt.checkpoint, rt.region, rt.env.get_str("MODE"), rt.logger.get_step()))
        return StepResult(data={"model": model["id"]})


def run_upload(executor: StepExecutor, runtime: RuntimeContext) -> ClientContext:
    registry: StepRegistry[ClientContext] = StepRegistry()
    registry.register(UsesClient())
    ctx = ClientContext(runtime_ctx=runtime)
    Orchestrator(registry, ctx, executor=executor).execute()
    return ctx


def test_sdk_style_step_with_client_and_logger_works_on_ray_as_in_process(
    make_executor: Callable[[], StepExecutor],
) -> None:
    rt = RuntimeContext(env={"MODE": "fast"}, client=StubClient("backend"), checkpoint={"id": 41})
    rt.region = "eu"  # an attribute of the user's own
    ctx = run_upload(make_executor(), rt)
    assert ctx.seen == [({"id": 7, "by": "backend", "name": "m"}, {"id": 41}, "eu", "fast", "upload")]
    assert [(e.kind, e.name, e.step, e.level, e.data) for e in rt.events] == [
        ("message", None, "upload", "info", {"message": "uploading"}),
        ("message", None, "upload", "warning", {"message": "slow backend"}),
        ("event", "metric", "upload", "info", {"category": "upload", "key": "bytes", "value": 10, "metrics": {}}),
        ("message", None, "upload", "error", {"message": "retrying once"}),
    ]
    assert rt.progress["upload"] == (2, 2)


class LiveConnection:
    """A client holding a socket: it cannot be pickled."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.pid = os.getpid()
        self.token = uuid.uuid4().hex

    def create_model(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"id": 7, "by": f"pid {self.pid}", **data}


def test_unpicklable_runtime_attribute_is_named_before_the_first_step(ray_session: None) -> None:
    from ray_backend import RayExecutor

    client = LiveConnection()
    try:
        with pytest.raises(ContextNotSerializableError) as caught:
            run_upload(RayExecutor(ray_config()), RuntimeContext(client=client))
    finally:
        client.sock.close()
    message = str(caught.value)
    assert message.startswith("runtime_ctx.client (LiveConnection) cannot be pickled, so it cannot be sent to a "
                              "Ray worker: TypeError: cannot pickle 'socket' object.")
    assert message.endswith("Build it on the worker instead: runtime_ctx.worker_factories['client'] = a function "
                            "that returns it (called once per worker process and run).")


class RecordsClient(BaseStep[ClientContext]):
    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    progress_weight = 1.0

    def execute(self, context: ClientContext) -> StepResult:
        client = context.runtime_ctx.client
        context.seen.append((os.getpid(), client.pid, client.token))
        client.sock.close()  # it is a real, open socket built on this worker
        return StepResult()


def test_worker_factory_builds_the_client_once_per_worker_process_and_run(ray_session: None) -> None:
    from ray_backend import RayExecutor

    rt = RuntimeContext()
    rt.worker_factories["client"] = LiveConnection
    registry: StepRegistry[ClientContext] = StepRegistry()
    for name in ("a", "b", "c"):
        registry.register(RecordsClient(name))
    ctx = ClientContext(runtime_ctx=rt)
    Orchestrator(registry, ctx, executor=RayExecutor(ray_config())).execute()
    assert rt.client is None  # the driver's own value is untouched
    assert all(worker_pid == client_pid != os.getpid() for worker_pid, client_pid, _ in ctx.seen)
    tokens_per_process: dict[int, set[str]] = {}
    for worker_pid, _, token in ctx.seen:
        tokens_per_process.setdefault(worker_pid, set()).add(token)
    assert all(len(tokens) == 1 for tokens in tokens_per_process.values()), tokens_per_process


class Holder:
    """Like synapse-sdk's train action: step code reaches the runtime through an object it keeps."""

    def __init__(self, ctx: RuntimeContext) -> None:
        self.ctx = ctx


class HoldsRuntime(BaseStep[ClientContext]):
    name = "held"
    progress_weight = 1.0

    def __init__(self, holder: Holder) -> None:
        self._holder = holder

    def execute(self, context: ClientContext) -> StepResult:
        self._holder.ctx.log_message("Registered {what}", what=self._holder.ctx.client.name)
        return StepResult()


def test_a_runtime_held_by_a_step_is_the_tasks_runtime_on_ray(make_executor: Callable[[], StepExecutor]) -> None:
    rt = RuntimeContext(client=StubClient("backend"))
    registry: StepRegistry[ClientContext] = StepRegistry()
    registry.register(HoldsRuntime(Holder(rt)))
    Orchestrator(registry, ClientContext(runtime_ctx=rt), executor=make_executor()).execute()
    assert [(e.kind, e.step, e.data) for e in rt.events] == [("message", "held", {"message": "Registered backend"})]
