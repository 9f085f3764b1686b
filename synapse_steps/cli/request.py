"""The arguments ``run`` and ``validate`` share, and the action they describe."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from synapse_steps.actions.base import BaseAction
from synapse_steps.cli.params import collect_params, params_problems
from synapse_steps.cli.target import CliError, build_config


@dataclass
class Request:
    """A command's arguments after click parsed them; the TARGET class is loaded already."""

    target: str
    action_class: type[BaseAction] | None
    load_error: CliError | None
    config: str | None
    executor: str | None
    address: str | None
    params_file: str | None
    params: Sequence[str]
    param_options: Mapping[str, str]
    json: bool
    progress_every_s: float


def make_action(request: Request) -> BaseAction:
    """The action with validated params and config; raises CliError/ConfigError naming the problem."""
    if request.load_error is not None:
        raise request.load_error
    assert request.action_class is not None
    model = request.action_class._resolve_params_model()
    params = collect_params(model, request.params_file, request.params, request.param_options)
    config = build_config(request.config, request.executor, request.address)
    try:
        return request.action_class(params, config=config)
    except ValidationError as exc:
        raise CliError("invalid params:\n  " + "\n  ".join(params_problems(exc))) from None
