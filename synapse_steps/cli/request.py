"""The arguments ``run`` and ``validate`` share, and the action they describe."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click
from pydantic import ValidationError

from synapse_steps.actions.base import BaseAction
from synapse_steps.cli.params import collect_params, params_problems
from synapse_steps.cli.target import CliError, build_config
from synapse_steps.runtime import RuntimeContext


@dataclass
class Request:
    """A command's arguments after click parsed them; the TARGET class is loaded already."""

    target: str
    action_class: type[BaseAction[Any, Any]] | None
    load_error: CliError | None
    config: str | None
    executor: str | None
    address: str | None
    params_file: str | None
    params: Sequence[str]
    param_options: Mapping[str, str]
    json: bool
    progress_every_s: float
    run_id: str | None = None


def make_action(request: Request) -> BaseAction[Any, Any]:
    """The action with validated params and config; raises CliError/ConfigError naming the problem."""
    if request.load_error is not None:
        raise request.load_error
    assert request.action_class is not None
    model = request.action_class._resolve_params_model()
    params = collect_params(model, request.params_file, request.params, request.param_options)
    config = build_config(request.config, request.executor, request.address)
    try:
        runtime_ctx = RuntimeContext(job_id=request.run_id) if request.run_id else None
        return request.action_class(params, runtime_ctx=runtime_ctx, config=config)
    except ValidationError as exc:
        raise CliError("invalid params:\n  " + "\n  ".join(params_problems(exc))) from None


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_run_id(value: str | None) -> str | None:
    """A run id names Ray actors and jobs: letters, digits, '-' and '_', at most 64."""
    if value is not None and not RUN_ID.fullmatch(value):
        raise click.BadParameter(f"{value!r}: use letters, digits, '-' and '_' (at most 64, not starting with '-')")
    return value
