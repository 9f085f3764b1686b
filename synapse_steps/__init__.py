"""Step-based workflows with weighted progress, shared state and rollback.

Runs in-process by default and on Ray by configuration (``ray_backend``), with no
change to the steps. This package never imports ``ray``.
"""

import logging

from synapse_steps.actions import BaseAction, BaseTrainAction, BaseUploadAction, TrainContext, UploadContext
from synapse_steps.config import ExecutorConfig, RaySettings, StepOptions, load_config
from synapse_steps.context import BaseStepContext
from synapse_steps.errors import (
    CallbackError,
    ConfigError,
    ContextNotSerializableError,
    ExecutorUnavailableError,
    JournalError,
    RollbackIncompleteError,
    RollbackTimeoutError,
    StepDefinitionError,
    StepFailedError,
    StepsError,
    UnknownStepError,
)
from synapse_steps.executor import StepExecutor
from synapse_steps.fanout import ShardFailedError
from synapse_steps.local_executor import LocalExecutor
from synapse_steps.messages import LogLevel, MessageCode
from synapse_steps.orchestrator import Orchestrator, StepRecord
from synapse_steps.registry import StepRegistry
from synapse_steps.resources import StepResources
from synapse_steps.result import StepResult
from synapse_steps.runtime import RuntimeContext, RuntimeEvent
from synapse_steps.step import BaseStep, StepProtocol
from synapse_steps.utility_steps import LoggingStep, TimingStep, ValidationStep

__version__ = "0.1.0"

# A library stays silent unless the application configures logging.
logging.getLogger("synapse_steps").addHandler(logging.NullHandler())

__all__ = [
    "BaseAction",
    "BaseStep",
    "BaseStepContext",
    "BaseTrainAction",
    "BaseUploadAction",
    "CallbackError",
    "ConfigError",
    "ContextNotSerializableError",
    "ExecutorConfig",
    "ExecutorUnavailableError",
    "JournalError",
    "LocalExecutor",
    "LogLevel",
    "LoggingStep",
    "MessageCode",
    "Orchestrator",
    "RaySettings",
    "RollbackIncompleteError",
    "RollbackTimeoutError",
    "RuntimeContext",
    "RuntimeEvent",
    "ShardFailedError",
    "StepDefinitionError",
    "StepExecutor",
    "StepFailedError",
    "StepOptions",
    "StepProtocol",
    "StepRecord",
    "StepRegistry",
    "StepResources",
    "StepResult",
    "StepsError",
    "TimingStep",
    "TrainContext",
    "UnknownStepError",
    "UploadContext",
    "ValidationStep",
    "load_config",
]
