"""``synapse-steps validate``: what a run checks before its first step, without running one.

Every problem is collected (a bad config does not hide bad params): the target loads and
names an action class, the executor config is valid (and Ray is installed if asked
for), the params validate against the action's model, the steps register with valid
weights, and the config's per-step overrides name registered steps.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from pydantic import ValidationError

from synapse_steps.actions.base import BaseAction
from synapse_steps.cli.params import collect_params, params_problems
from synapse_steps.cli.report_json import claim_stdout, jsonable
from synapse_steps.cli.request import Request
from synapse_steps.cli.target import CliError, build_config
from synapse_steps.config import ExecutorConfig
from synapse_steps.errors import StepsError
from synapse_steps.progress import validate_weights
from synapse_steps.registry import StepRegistry

AREAS = ("target", "config", "params", "steps")


@dataclass
class Validation:
    """The outcome: per area, what passed, what is wrong, or why it was not checked."""

    target: str
    passed: dict[str, str] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)
    not_checked: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """True when no area reported a problem."""
        return not self.problems

    def problem(self, area: str, message: str) -> None:
        """Record a problem in ``area`` (target, params, config, steps); the outcome is then invalid."""
        self.problems.append({"area": area, "message": message})

    def as_json(self) -> dict[str, Any]:
        """The outcome as the ``validate --json`` document."""
        return {
            "valid": self.valid,
            "target": self.target,
            **self.details,
            "steps": self.steps,
            "problems": self.problems,
            "checked": list(self.passed),
            "not_checked": self.not_checked,
        }


def validate_command(request: Request) -> int:
    """Run the checks; print a report (text, or one JSON object with ``--json``); 0 if valid, else 2."""
    out = claim_stdout() if request.json else sys.stdout
    result = check(request)
    if request.json:
        out.write(json.dumps(jsonable(result.as_json())) + "\n")
        out.flush()
    else:
        _print_text(result, out)
    return 0 if result.valid else 2


def check(request: Request) -> Validation:
    """Check target, params, config and steps as ``run`` would, without running a step; never raises."""
    v = Validation(request.target)
    config: ExecutorConfig | None = None
    try:
        config = build_config(request.config, request.executor, request.address)
        v.details["executor"] = config.executor
        if config.executor == "ray" and importlib.util.find_spec("ray") is None:
            v.problem("config", 'executor "ray" needs Ray: pip install "synapse-steps[ray]"')
        else:
            v.passed["config"] = f"executor={config.executor}"
    except StepsError as exc:
        v.problem("config", str(exc))
    if request.action_class is None:
        v.problem("target", str(request.load_error))
        v.not_checked.update(dict.fromkeys(("params", "steps"), "the target did not load"))
        return v
    action_class = request.action_class
    v.passed["target"] = v.details["action"] = action_class.__name__

    action: BaseAction[Any, Any] | None = None
    try:
        params = collect_params(
            action_class._resolve_params_model(), request.params_file, request.params, request.param_options
        )
        # With a broken config the steps are still built and checked, against built-in defaults.
        action = action_class(params, config=config or ExecutorConfig.model_construct())
        v.details["params"] = action.params.model_dump(mode="json")
        v.passed["params"] = " ".join(f"{k}={val}" for k, val in v.details["params"].items())
    except ValidationError as exc:
        for line in params_problems(exc):
            v.problem("params", line)
    except CliError as exc:
        v.problem("params", str(exc))
    if action is None:
        v.not_checked["steps"] = "the action cannot be built without valid params"
        return v

    try:
        registry: StepRegistry[Any] = StepRegistry()
        action.setup_steps(registry)
        steps = registry.get_steps()
        validate_weights(steps)
    except (StepsError, ValueError) as exc:
        v.problem("steps", str(exc))
        return v
    v.passed["steps"] = " → ".join(registry.get_step_names())
    if config is not None:
        try:
            config.check_step_names(registry.get_step_names())
        except StepsError as exc:
            v.problem("config", str(exc))
            v.passed.pop("config", None)
    resolver = config or ExecutorConfig.model_construct()
    for step in steps:
        entry: dict[str, Any] = {"name": step.name, "weight": step.progress_weight}
        try:
            res = resolver.resources_for(step)
        except ValueError as exc:
            v.problem("steps", f"step '{step.name}': {exc}")
            v.passed.pop("steps", None)
        else:
            entry.update(
                num_cpus=res.num_cpus,
                num_gpus=res.num_gpus,
                memory=res.memory,
                resources=res.resources,
                max_retries=res.max_retries,
                timeout_s=res.timeout_s,
            )
        v.steps.append(entry)
    return v


def _print_text(v: Validation, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out, soft_wrap=True)
    for area in AREAS:
        for p in (p for p in v.problems if p["area"] == area):
            console.print(Text("✗ ", style="bold red") + Text(f"{area:<7} {p['message']}"))
        if area in v.passed:
            console.print(Text("✓ ", style="green") + Text(f"{area:<7} {v.passed[area]}"))
        elif area in v.not_checked:
            console.print(Text(f"- {area:<7} not checked: {v.not_checked[area]}", style="dim"))
    if v.steps and all("num_cpus" in s for s in v.steps):
        table = Table(
            "step",
            "weight",
            "num_cpus",
            "num_gpus",
            "max_retries",
            "timeout_s",
            title="step resources on Ray (ignored in-process)",
            title_justify="left",
        )
        for s in v.steps:
            timeout = "-" if s["timeout_s"] is None else f"{s['timeout_s']:g}"
            table.add_row(
                s["name"],
                f"{s['weight']:g}",
                f"{s['num_cpus']:g}",
                f"{s['num_gpus']:g}",
                str(s["max_retries"]),
                timeout,
            )
        console.print(table)
    if v.valid:
        console.print(Text("valid", style="bold green") + Text(": nothing was run"))
    else:
        count = len(v.problems)
        console.print(Text("invalid", style="bold red") + Text(f": {count} problem{'s' * (count != 1)}"))
