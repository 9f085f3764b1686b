"""Specialized actions built on the step API."""

from synapse_steps.actions.base import BaseAction
from synapse_steps.actions.train import BaseTrainAction, TrainContext
from synapse_steps.actions.upload import BaseUploadAction, UploadContext

__all__ = ["BaseAction", "BaseTrainAction", "BaseUploadAction", "TrainContext", "UploadContext"]
