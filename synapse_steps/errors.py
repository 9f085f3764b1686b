"""Every error the library raises, rooted in one base so callers can catch them all.

    StepsError
    ├── StepFailedError (RuntimeError)   a run failed; rollback already happened
    ├── RollbackIncompleteError (RuntimeError)  rollback was abandoned (a third signal): lists what was not undone
    ├── CallbackError (RuntimeError)      a progress callback or event subscriber raised on the driver
    ├── RollbackTimeoutError (TimeoutError)  a rollback ran past its rollback_timeout_s and was stopped
    ├── StepDefinitionError (ValueError)  bad registry: duplicate/empty name, bad weights
    │   └── UnknownStepError              insert/override names a step not registered
    ├── ConfigError (ValueError)          executor configuration rejected at load
    ├── ContextNotSerializableError (TypeError)  a context field or step cannot be pickled
    ├── ExecutorUnavailableError (ImportError)   the Ray extra is not installed
    └── JournalError                      the run journal refused: bad URL, unreachable, newer schema, lost run
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synapse_steps.result import StepResult


class StepsError(Exception):
    """Base of every error raised by synapse_steps and ray_backend."""


class StepFailedError(StepsError, RuntimeError):
    """A step failed; the executed steps were rolled back before this was raised.

    Subclasses ``RuntimeError`` because the seed API documents ``except RuntimeError``.
    The message is the seed's, ``Step 'NAME' failed: ERROR``; the rollback details are
    attributes: ``rollback_errors`` holds one message per rollback that failed
    (``Rollback failed for step 'x': ...``, as in ``ctx.errors``) and
    ``rollback_exceptions`` the exception objects themselves (a rollback that ran on a
    Ray worker carries the worker's traceback as its ``__cause__``). ``traceback`` is
    the failing step's own traceback text (from the worker when it ran remotely).
    """

    def __init__(
        self,
        message: str,
        step_name: str,
        result: StepResult,
        rollback_errors: list[str] | None = None,
        rollback_exceptions: list[BaseException] | None = None,
    ) -> None:
        super().__init__(message, step_name, result, rollback_errors, rollback_exceptions)
        self.step_name = step_name
        self.result = result
        self.rollback_errors = list(rollback_errors or [])
        self.rollback_exceptions = list(rollback_exceptions or [])

    @property
    def traceback(self) -> str | None:
        """The failed step's traceback text, as the seed's callers read it from the error."""
        return self.result.traceback

    def __str__(self) -> str:
        return str(self.args[0])


class RollbackIncompleteError(StepsError, RuntimeError):
    """The rollback was abandoned before it finished (the user sent a third signal).

    ``not_run`` names the steps whose rollback never ran (last first), ``abandoned``
    the one whose rollback was stopped half-way (or None), and ``cause`` is what
    started the rollback: the ``StepFailedError`` or ``KeyboardInterrupt``. Nothing
    about these steps was undone by this run: undo them by hand.
    """

    def __init__(
        self, message: str, not_run: list[str], abandoned: str | None, cause: BaseException | None
    ) -> None:
        super().__init__(message, not_run, abandoned, cause)
        self.not_run = list(not_run)
        self.abandoned = abandoned
        self.cause = cause

    def __str__(self) -> str:
        return str(self.args[0])


class CallbackError(StepsError, RuntimeError):
    """A ``progress_callback``, hook or event subscriber raised on the driver.

    Raised where the event was delivered (inside the step in-process, in the
    executor's wait on Ray); the run stops the step, rolls back, and fails with
    this message, so a broken callback is named instead of silently ending the run.
    """


class RollbackTimeoutError(StepsError, TimeoutError):
    """A rollback did not finish within its ``rollback_timeout_s``; it was stopped (on Ray)."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised on a worker, attached as its ``__cause__``.

    The same device as ``concurrent.futures.ProcessPoolExecutor``: the exception
    object travels back as itself, and its worker-side stack stays readable.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class StepDefinitionError(StepsError, ValueError):
    """A step or registry is malformed (duplicate or empty name, invalid weights)."""


class UnknownStepError(StepDefinitionError):
    """A name given to the registry or the config matches no registered step."""


class ConfigError(StepsError, ValueError):
    """Executor configuration was rejected; the message names the field."""


class ContextNotSerializableError(StepsError, TypeError):
    """A context field or a step cannot be pickled, so it cannot travel to a worker."""


class ExecutorUnavailableError(StepsError, ImportError):
    """The requested executor needs an optional dependency that is not installed."""


class JournalError(StepsError):
    """The run journal refused an operation; the one-line message names the problem, nothing was changed."""
