"""The value every step attempt produces, whether it ran, was skipped or raised."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

RESULT_FIELDS = ("success", "data", "error", "rollback_data", "skipped")


@dataclass
class StepResult:
    """Outcome of one step.

    ``rollback_data`` is for the step's own ``rollback`` (what to undo). ``traceback``
    is filled by the orchestrator when ``execute`` raised, so the user keeps the
    original stack even when the step ran in another process.
    """

    success: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    rollback_data: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    traceback: str | None = field(default=None, repr=False, compare=False)


def is_step_result(value: object) -> bool:
    """True for a ``StepResult`` or any object with its fields (synapse-sdk's ``StepResult``)."""
    return isinstance(value, StepResult) or (
        not isinstance(value, type) and all(hasattr(value, name) for name in RESULT_FIELDS)
    )
