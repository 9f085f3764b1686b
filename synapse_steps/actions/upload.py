"""Upload actions: collect files, upload them, and undo exactly this run's uploads on failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from synapse_steps.actions.base import BaseAction
from synapse_steps.context import BaseStepContext

P = TypeVar("P", bound=BaseModel)


@dataclass
class UploadContext(BaseStepContext):
    """State shared by an upload action's steps."""

    params: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    uploaded_files: list[str] = field(default_factory=list)


class BaseUploadAction(BaseAction[P, UploadContext], Generic[P]):
    """Base for upload actions: ``class MyUpload(BaseUploadAction[MyParams])``."""

    context_class = UploadContext
