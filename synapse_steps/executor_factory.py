"""The executor a configuration names: Ray is imported only when it is asked for."""

from __future__ import annotations

from synapse_steps.config import ExecutorConfig
from synapse_steps.errors import ExecutorUnavailableError
from synapse_steps.executor import StepExecutor


def build_executor(config: ExecutorConfig) -> StepExecutor:
    """A ``LocalExecutor`` or a ``RayExecutor`` for ``config``.

    The config's ``steps`` overrides are checked against the run's steps when the
    executor opens the run, before any step starts.

    Raises:
        ExecutorUnavailableError: the config asks for Ray and Ray is not installed.
    """
    if config.executor == "local":
        from synapse_steps.local_executor import LocalExecutor

        return LocalExecutor(config)
    try:
        from ray_backend import RayExecutor
    except ImportError as exc:
        raise ExecutorUnavailableError(
            f"executor 'ray' needs Ray ({exc}); install it with: pip install \"synapse-steps[ray]\""
        ) from exc
    return RayExecutor(config)
