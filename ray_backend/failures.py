"""Ray's exceptions mapped to one message per cause, at one boundary."""

from __future__ import annotations

import re

from ray import exceptions as rex

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_UNSERIALIZABLE_MARK = "Original exception:\nray.exceptions.RayTaskError: "


def describe(exc: BaseException, step_name: str, action: str = "execute") -> tuple[str, str | None]:
    """(message, traceback text) for an exception raised while getting a step task's result."""
    where = f"step '{step_name}' ({action})"
    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if exc.cause is not None else exc
        if isinstance(cause, rex.RayError) and not isinstance(cause, rex.RayTaskError):
            return describe(cause, step_name, action)
        worker_traceback = _ANSI.sub("", str(exc))
        return _raised_message(worker_traceback) or str(cause) or type(cause).__name__, worker_traceback
    if isinstance(exc, rex.UnserializableException) and _UNSERIALIZABLE_MARK in str(exc):
        # The step's exception could not be rebuilt on the driver (its __init__ does not take its args).
        worker_traceback = _ANSI.sub("", str(exc).split(_UNSERIALIZABLE_MARK, 1)[1]).rstrip("\n")
        return _raised_message(worker_traceback) or type(exc).__name__, worker_traceback
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


def _raised_message(worker_traceback: str) -> str | None:
    """The message of the exception a worker's traceback ends with, as ``str(exc)`` gave it there.

    Ray rebuilds the exception on the driver as ``type(exc)(*exc.args)``, which gives another
    message (or fails) when the class's ``__init__`` does not take its own ``args``; the
    traceback text was formatted on the worker from the original. None when the text does not
    end with a plain ``module.Type: message`` (e.g. an exception group).
    """
    lines = worker_traceback.splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    if not frames:
        return None
    rest = lines[frames[-1] + 1 :]
    while rest and rest[0].startswith(" "):  # the frame's source line and its ^^^ markers
        rest = rest[1:]
    if not rest or rest[0].startswith(("|", "+")):
        return None
    head, colon, message = "\n".join(rest).partition(": ")
    if " " in head:
        return None
    return message if colon else head.rsplit(".", 1)[-1]
