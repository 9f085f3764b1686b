"""The user's runtime context on Ray workers: what travels, what is rebuilt, and the way back.

On the driver, ``runtime_spec`` takes every attribute of ``ctx.runtime_ctx`` (the
client, ``checkpoint``, ``env``, anything the user put there) except its sinks and
logger, and proves each one picklable; an attribute named in
``runtime_ctx.worker_factories`` is built on the worker by calling its factory
instead (once per worker process and run: a client with a live connection). On the
worker, ``RuntimeSpec.build`` puts them on the step's runtime: this package's
``WorkerRuntime`` (which ships events to the driver), or — for a runtime of another
class with synapse-sdk's interface — a copy of it whose ``logger`` ships.

Step code often holds the runtime itself (synapse-sdk's train steps keep their action,
whose ``ctx`` is the runtime). During a run the driver's runtime object pickles as a
reference to the runtime of the task that unpickles it, so such steps reach the same
worker runtime as ``ctx.runtime_ctx``. ``replay`` delivers worker events to the
driver's runtime, whichever interface it has.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ray import cloudpickle
from ray.cloudpickle import cloudpickle as _cloudpickle_impl

from ray_backend.process_slots import shared
from synapse_steps.errors import ContextNotSerializableError
from synapse_steps.messages import LogLevel
from synapse_steps.runtime import RuntimeContext, RuntimeEvent

# Kept on the driver (what steps reported, who listens) or rebuilt on the worker (logger).
_DRIVER_ONLY = frozenset(
    {"events", "progress", "metrics", "callback_error", "_subscribers", "_commit_hooks", "logger", "log_sink", "worker_factories"}
)
FACTORIES_ATTRIBUTE = "worker_factories"


@dataclass(frozen=True)
class RuntimeSpec:
    """How a worker rebuilds the run's runtime context."""

    runtime_class: type
    attributes: dict[str, Any]
    factories: dict[str, Callable[[], Any]]
    run_key: str

    def build(self, engine: RuntimeContext) -> Any:
        """The ``runtime_ctx`` a step sees, reporting through ``engine`` (a ``WorkerRuntime``)."""
        values = {**self.attributes, **_run_factories(self.run_key, self.factories)}
        if issubclass(self.runtime_class, RuntimeContext):
            facing: Any = engine
        else:
            facing = self.runtime_class.__new__(self.runtime_class)
            facing.logger = engine.logger
            facing.commit_context = engine.commit_context  # ctx.commit() reaches the run's actor
        for name, value in values.items():
            setattr(facing, name, value)
        return facing


def runtime_spec(runtime: Any, run_key: str) -> RuntimeSpec:
    """Every attribute the worker needs, proven picklable; raise naming the first one that is not.

    ``run_key`` identifies the run (factories run once per worker process and run).
    """
    factories = dict(getattr(runtime, FACTORIES_ATTRIBUTE, None) or {})
    attributes: dict[str, Any] = {}
    for name, value in vars(runtime).items():
        if name in _DRIVER_ONLY or name in factories:
            continue
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            raise ContextNotSerializableError(
                f"runtime_ctx.{name} ({type(value).__name__}) cannot be pickled, so it cannot be sent to a Ray "
                f"worker: {type(exc).__name__}: {exc}. Build it on the worker instead: "
                f"runtime_ctx.{FACTORIES_ATTRIBUTE}['{name}'] = a function that returns it "
                "(called once per worker process and run)."
            ) from exc
        attributes[name] = value
    for name, factory in factories.items():
        what = f"runtime_ctx.{FACTORIES_ATTRIBUTE}['{name}']"
        if not callable(factory):
            raise ContextNotSerializableError(f"{what} is {type(factory).__name__}, not a function")
        try:
            cloudpickle.dumps(factory)
        except Exception as exc:
            raise ContextNotSerializableError(
                f"{what} cannot be pickled, so it cannot build {name!r} on a Ray worker: {type(exc).__name__}: {exc}"
            ) from exc
    return RuntimeSpec(type(runtime), attributes, factories, run_key)


def _run_factories(run_key: str, factories: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    built = shared().built
    for key in [key for key in built if key[0] != run_key]:
        del built[key]  # a new run on this worker: the previous run's objects go
    for name, factory in factories.items():
        if (run_key, name) not in built:
            built[(run_key, name)] = factory()
    return {name: built[(run_key, name)] for name in factories}


# --- the driver's runtime, wherever a step holds it, becomes the task's runtime ---------------
_shipped: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()  # driver side only


def ship_runtime(runtime: Any) -> None:
    """From now on this runtime object pickles as "the runtime of the task that unpickles it"."""
    _shipped[id(runtime)] = runtime
    table = _cloudpickle_impl.Pickler._dispatch_table
    kind = type(runtime)
    if kind not in table:
        table[kind] = _reduce_runtime


def _reduce_runtime(obj: Any) -> Any:
    if _shipped.get(id(obj)) is obj:
        return _task_runtime_proxy, ()
    return obj.__reduce_ex__(4)


class TaskRuntimeProxy:
    """Stands for the running task's ``runtime_ctx`` inside objects a step carries."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_current(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(_current(), name, value)

    def __reduce__(self) -> Any:
        return _task_runtime_proxy, ()


def _task_runtime_proxy() -> TaskRuntimeProxy:
    return TaskRuntimeProxy()


def _current() -> Any:
    runtime = shared().active
    if runtime is None:
        raise RuntimeError("the run's runtime context is only available while a step runs on this worker")
    return runtime


def activate(runtime: Any) -> None:
    """Make ``runtime`` the one proxies resolve to in this process (``None``: none)."""
    shared().active = runtime


# --- the way back: worker events into the driver's runtime --------------------------------------
def replay(runtime: Any, event: RuntimeEvent) -> None:
    """Deliver a worker event: ``record`` on this package's runtime, the logger interface on another."""
    if isinstance(runtime, RuntimeContext):
        runtime.record(event)
        return
    logger = runtime.logger
    level = LogLevel(event.level)  # an enum level, as synapse-sdk's loggers require
    if event.kind == "progress":
        logger.set_progress(event.data["current"], event.data["total"], event.step)
    elif event.kind == "metrics":
        logger.set_metrics(dict(event.data), event.step)
    elif event.kind == "message":
        data = logger._build_message_data(event.data["message"], key=event.data.get("key"))
        logger.log(level, "message", data, step=event.step)
    elif event.kind == "event":
        logger.log(level, event.name or event.kind, dict(event.data), event.file, step=event.step)
