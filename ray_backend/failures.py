"""Ray's exceptions mapped to one message per cause, at one boundary."""

from __future__ import annotations

from ray import exceptions as rex


def describe(exc: BaseException, step_name: str, action: str = "execute") -> tuple[str, str | None]:
    """(message, traceback text) for an exception raised while getting a step task's result."""
    where = f"step '{step_name}' ({action})"
    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if exc.cause is not None else exc
        if isinstance(cause, rex.RayError) and not isinstance(cause, rex.RayTaskError):
            return describe(cause, step_name, action)
        return (str(cause) or type(cause).__name__), str(exc)
    if isinstance(exc, rex.OutOfMemoryError):
        return f"the worker running {where} was killed by Ray's memory monitor (out of memory): {exc}", None
    if isinstance(exc, rex.NodeDiedError):
        return f"the node running {where} died: {exc}", None
    if isinstance(exc, rex.WorkerCrashedError):
        return (
            f"the worker process running {where} crashed (it exited or was killed, e.g. os._exit, "
            "a signal, or the OOM killer)",
            None,
        )
    if isinstance(exc, rex.TaskCancelledError):
        return f"{where} was cancelled", None
    if isinstance(exc, (rex.ObjectLostError, rex.OwnerDiedError)):
        return f"the result of {where} was lost: {exc}", None
    if isinstance(exc, rex.TaskUnschedulableError):
        return f"{where} could not be scheduled: {exc}", None
    return f"{where} failed in Ray: {type(exc).__name__}: {exc}", None
