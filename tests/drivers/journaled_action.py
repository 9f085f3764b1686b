"""An action for the journal tests: three steps that leave a trace, and a crash on request.

    synapse-steps run tests/drivers/journaled_action.py:ThreeSteps --out DIR [--journal URL]

Every ``execute`` appends ``run NAME KEY`` (``KEY``: ``ctx.idempotency_key``) to
``DIR/log`` and its name to ``ctx.done`` (once: a resumed step sees what it committed),
then commits the context. Every rollback
appends ``undo NAME DONE ROLLBACK_DATA`` (what it saw). Marker files in DIR steer it,
so a resumed run (same journaled params) behaves differently only when the test says:
``crash-in-NAME`` makes step NAME write ``ready-NAME`` after its commit and wait to be
killed; ``slow-in-NAME`` makes it take 3 s; ``fail-in-NAME`` makes it raise;
``hang-undo-NAME`` makes its rollback write ``ready-undo-NAME`` and wait to be killed. With ``SS_EXTRA_STEP=1`` in the driver's
environment the action registers a fourth step (a changed registry).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from synapse_steps import BaseStep, BaseStepContext, StepRegistry, StepResult
from synapse_steps.actions.base import BaseAction


class Params(BaseModel):
    out: str


@dataclass
class TraceContext(BaseStepContext):
    params: dict[str, Any] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)


def _append(ctx: TraceContext, line: str) -> None:
    with open(Path(ctx.params["out"]) / "log", "a") as log:
        log.write(line + "\n")


class Trace(BaseStep[TraceContext]):
    progress_weight = 1.0

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def execute(self, ctx: TraceContext) -> StepResult:
        out = Path(ctx.params["out"])
        _append(ctx, f"run {self.name} {ctx.idempotency_key}")
        if self.name not in ctx.done:  # idempotent: a resumed run restores what this step committed
            ctx.done.append(self.name)
        ctx.commit()
        if (out / f"crash-in-{self.name}").exists():
            (out / f"ready-{self.name}").touch()
            time.sleep(300)  # the test kills the driver now
        if (out / f"slow-in-{self.name}").exists():
            time.sleep(3)
        if (out / f"fail-in-{self.name}").exists():
            raise RuntimeError(f"{self.name} failed")
        return StepResult(data={"step": self.name}, rollback_data={"undo": self.name})

    def rollback(self, ctx: TraceContext, result: StepResult) -> None:
        out = Path(ctx.params["out"])
        if (out / f"hang-undo-{self.name}").exists():
            (out / f"ready-undo-{self.name}").touch()
            time.sleep(300)  # the test kills the driver during this rollback
        _append(ctx, f"undo {self.name} {ctx.done} {result.rollback_data}")


class ThreeSteps(BaseAction[Params, TraceContext]):
    context_class = TraceContext

    def setup_steps(self, registry: StepRegistry[TraceContext]) -> None:
        for name in ("one", "two", "three"):
            registry.register(Trace(name))
        if os.environ.get("SS_EXTRA_STEP") == "1":
            registry.register(Trace("four"))
