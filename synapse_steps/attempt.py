"""One attempt at a step's ``execute``, identical wherever it runs.

Executors call this in their own process (in-process, or inside a Ray worker), so
exception capture and result checking behave the same on every backend.
"""

from __future__ import annotations

import traceback
from typing import Any

from synapse_steps.context import BaseStepContext
from synapse_steps.interrupts import RollbackAbandoned
from synapse_steps.result import StepResult, is_step_result
from synapse_steps.step import BaseStep


def describe_exception(exc: BaseException) -> str:
    """The error text of a failed step: the message, or the type when there is none.

    ``SystemExit``, ``CancelledError`` and other non-``Exception`` types also name
    their type (``SystemExit: 3`` says more than ``3``).
    """
    text = str(exc)
    if not isinstance(exc, Exception):
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text or type(exc).__name__


def run_execute(
    step: BaseStep[Any], ctx: BaseStepContext, reraise: tuple[type[BaseException], ...] = ()
) -> StepResult:
    """Run ``step.execute``; an exception or a wrong return type becomes a failed result.

    ``SystemExit``, ``asyncio.CancelledError`` and ``GeneratorExit`` fail the step like
    any exception (on a Ray worker they would otherwise kill the worker, in-process
    escape the rollback). ``KeyboardInterrupt`` is an interrupt, not a step error, and
    propagates. Exceptions matching ``reraise`` propagate too, so an executor that
    retries on chosen exceptions (Ray's ``retry_exceptions``) can see them.
    """
    try:
        result = step.execute(ctx)
    except reraise:
        raise
    except (KeyboardInterrupt, RollbackAbandoned):
        raise
    except BaseException as exc:  # noqa: BLE001 - any step error fails the step, never the run loop
        rollback_data = getattr(exc, "rollback_data", None)  # e.g. ShardFailedError: which shards completed
        return StepResult(
            success=False,
            error=describe_exception(exc),
            traceback=traceback.format_exc(),
            rollback_data=dict(rollback_data) if isinstance(rollback_data, dict) else {},
        )
    if not is_step_result(result):
        return StepResult(
            success=False,
            error=f"step '{step.name}' returned {type(result).__name__} from execute(); it must return a StepResult",
        )
    if not result.success and not result.error:
        result.error = "execute() returned success=False without an error message"
    return result
