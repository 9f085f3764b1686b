"""The arguments ``run`` and ``validate`` share, and the action they describe."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from synapse_steps.actions.base import BaseAction
from synapse_steps.cli.params import collect_params, params_problems
from synapse_steps.cli.target import CliError, build_config
from synapse_steps.config import ExecutorConfig
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
    journal_url: str | None = None  # --journal URL
    no_journal: bool = False  # --no-journal


def make_action(request: Request) -> BaseAction[Any, Any]:
    """The action with validated params and config; raises CliError/ConfigError naming the problem."""
    if request.load_error is not None:
        raise request.load_error
    assert request.action_class is not None
    model = request.action_class._resolve_params_model()
    params = collect_params(model, request.params_file, request.params, request.param_options)
    config = with_journal(build_config(request.config, request.executor, request.address), request)
    try:
        runtime_ctx = RuntimeContext(job_id=request.run_id) if request.run_id else None
        action = request.action_class(params, runtime_ctx=runtime_ctx, config=config)
    except ValidationError as exc:
        raise CliError("invalid params:\n  " + "\n  ".join(params_problems(exc))) from None
    action.target = absolute_target(request.target)
    return action


def with_journal(config: ExecutorConfig, request: Request) -> ExecutorConfig:
    """The CLI journals every run: ``--journal``, else the config's, else the per-user default.

    The journal is opened once here, so a bad URL or a database that does not answer is a
    one-line error (exit status 2) before anything starts.
    """
    from synapse_steps.journal import Journal, default_url

    if request.no_journal:
        return config.model_copy(update={"journal": None})
    url = request.journal_url or config.journal or default_url()
    Journal.open(url).close()
    return config.model_copy(update={"journal": url})


def absolute_target(target: str) -> str:
    """TARGET as ``resume`` can import it from any folder: a file's path made absolute."""
    where, _, attr = target.rpartition(":")
    if where.endswith(".py") or "/" in where or os.sep in where:
        return f"{Path(where).expanduser().resolve()}:{attr}"
    return target


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_run_id(value: str | None) -> str | None:
    """A run id names Ray actors and jobs: letters, digits, '-' and '_', at most 64."""
    if value is not None and not RUN_ID.fullmatch(value):
        raise click.BadParameter(f"{value!r}: use letters, digits, '-' and '_' (at most 64, not starting with '-')")
    return value
