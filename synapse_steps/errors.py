"""Every error the library raises, rooted in one base so callers can catch them all.

    StepsError
    ├── StepFailedError (RuntimeError)   a run failed; rollback already happened
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
    ``rollback_errors`` holds one message per rollback that raised; ``traceback`` is
    the failing step's own traceback text (from the worker when it ran remotely).
    """

    def __init__(
        self,
        message: str,
        step_name: str,
        result: StepResult,
        rollback_errors: list[str] | None = None,
    ) -> None:
        super().__init__(message, step_name, result, rollback_errors)
        self.step_name = step_name
        self.result = result
        self.rollback_errors = list(rollback_errors or [])

    @property
    def traceback(self) -> str | None:
        return self.result.traceback

    def __str__(self) -> str:
        return str(self.args[0])


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
