"""What a step task hands back to the driver: one typed value, written by the worker.

The task returns two objects (both owned by the driver, so they outlive the worker):
this report, and a dict of the large values the step replaced, which the report's
``fields`` point at with ``NEW_LARGE_VALUE`` markers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from synapse_steps.result import StepResult
from synapse_steps.runtime import RuntimeEvent


@dataclass
class TaskReport:
    """The outcome of one ``execute`` or ``rollback`` task on its worker.

    ``fields``: the context state the task ends with (small values inline, large
    ones as ``StoredField`` or ``NEW_LARGE_VALUE``). ``events``: what it reported
    and had not shipped yet, plus its final progress. ``batches_sent``: how many
    batches it shipped to the context actor (the driver drains those first, to
    keep order). ``result``: the ``StepResult`` of ``execute``. ``error`` and
    ``traceback``: the exception ``rollback`` raised, as itself. ``stopped``: the
    task was cancelled (Ctrl-C, timeout) and stopped cooperatively, committing its
    state before it returned. ``unconfirmed``: the events of the batches it shipped
    while the context actor was still starting (None once the actor took one): if the
    actor is still not up, the driver replays these instead of waiting for it.
    """

    node_id: str
    fields: dict[str, Any]
    events: list[RuntimeEvent] = field(default_factory=list)
    batches_sent: int = 0
    result: StepResult | None = None
    error: BaseException | None = None
    traceback: str | None = None
    stopped: bool = False
    unconfirmed: list[RuntimeEvent] | None = None
