"""Train actions: load data, train, evaluate, save — as steps over a TrainContext."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from synapse_steps.actions.base import BaseAction
from synapse_steps.context import BaseStepContext

P = TypeVar("P", bound=BaseModel)


@dataclass
class TrainContext(BaseStepContext):
    """State shared by a train action's steps. ``params`` is the validated params as a dict."""

    params: dict[str, Any] = field(default_factory=dict)
    dataset: Any = None
    model: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    model_path: str | None = None
    # synapse-sdk's tune-mode fields, so its train steps find them
    data_path: Any = None
    tune_result: dict[str, Any] | None = None
    trial_models: list[dict[str, Any]] = field(default_factory=list)


class BaseTrainAction(BaseAction[P, TrainContext], Generic[P]):
    """Base for train actions: ``class MyTrain(BaseTrainAction[MyParams])``."""

    context_class = TrainContext
