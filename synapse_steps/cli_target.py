"""What ``synapse-steps`` runs: the action class TARGET names, its params, its config.

Everything here fails with ``CliError`` (exit status 2) and a message that names the
target, the file or the field, before any step runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from pydantic import ValidationError

from synapse_steps.actions.base import BaseAction
from synapse_steps.config import ExecutorConfig, load_config
from synapse_steps.errors import StepsError

TARGET_FORMS = "'package.module:ClassName' or 'path/to/file.py:ClassName'"


class CliError(StepsError, ValueError):
    """The command cannot start (bad target, params or config); the CLI exits with status 2."""


def load_action_class(target: str) -> type[BaseAction]:
    """The ``BaseAction`` subclass named by ``module:Attr`` or ``path/to/file.py:Attr``.

    A file is imported under a private module name (its ``if __name__ == "__main__"``
    block does not run) with its folder on ``sys.path``, so it can import its
    neighbours. A module name is imported with the current directory on ``sys.path``,
    as ``python -m`` would.
    """
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise CliError(f"TARGET {target!r} must be {TARGET_FORMS}")
    is_file = where.endswith(".py") or "/" in where or os.sep in where
    module = _import_file(Path(where)) if is_file else _import_module(where)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CliError(f"{where} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, BaseAction)):
        what = f"the class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise CliError(
            f"{target} is {what}, not an action: TARGET must name a BaseAction subclass, "
            "e.g. class MyTrain(BaseTrainAction[MyParams])"
        )
    if inspect.isabstract(obj):
        raise CliError(f"{target} is abstract: it must implement setup_steps(registry)")
    return obj


def _import_file(path: Path) -> ModuleType:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise CliError(f"TARGET file {path} does not exist")
    name = "synapse_steps_target_" + re.sub(r"\W", "_", path.stem)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise CliError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(name: str) -> ModuleType:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise CliError(f"no module named {name!r} (TARGET must be {TARGET_FORMS})") from exc
        raise CliError(f"importing {name} failed: {exc}") from exc
    except Exception as exc:
        raise CliError(f"importing {name} failed: {type(exc).__name__}: {exc}") from exc


def read_params(params_file: str | None, items: Sequence[str]) -> dict[str, Any]:
    """Params from a YAML/JSON file, then ``key=value`` items on top (dotted keys nest).

    Each value is parsed as YAML, so ``epochs=3`` is an int, ``dry_run=true`` a bool,
    ``name=abc`` a string and ``tags=[a, b]`` a list; quote to force a string (``"'3'"``).
    """
    params: dict[str, Any] = {}
    if params_file is not None:
        path = Path(params_file)
        try:
            text = path.read_text()
        except OSError as exc:
            raise CliError(f"cannot read params file {path}: {exc.strerror}") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except Exception as exc:  # noqa: BLE001 - any parser error is a usage error
            raise CliError(f"cannot parse params file {path}: {exc}") from None
        if data is not None and not isinstance(data, dict):
            raise CliError(f"params file {path} must hold a mapping, got {type(data).__name__}")
        params.update(data or {})
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--param {item!r} must be KEY=VALUE")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = params
        *parents, leaf = key.strip().split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value
    return params


def params_problems(exc: ValidationError) -> list[str]:
    """One line per invalid field: ``params.epochs: Input should be ... (got 0)``."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(root)"
        line = f"params.{where}: {error['msg']}"
        if error["type"] != "missing" and "input" in error:
            line += f" (got {error['input']!r})"
        lines.append(line)
    return lines


def make_action(action_class: type[BaseAction], params: dict[str, Any], config: ExecutorConfig) -> BaseAction:
    """The action with validated params; invalid params raise CliError naming each field."""
    try:
        return action_class(params, config=config)
    except ValidationError as exc:
        raise CliError("invalid params:\n  " + "\n  ".join(params_problems(exc))) from None


def build_config(path: str | None, executor: str | None, address: str | None) -> ExecutorConfig:
    """The config file layered with ``SYNAPSE_STEPS_*`` env, then the command-line flags on top.

    Raises ``ConfigError`` naming the field, as ``load_config`` does.
    """
    config = load_config(path)
    if executor is not None:
        config = config.model_copy(update={"executor": executor})
    if address is not None:
        config = config.model_copy(update={"ray": config.ray.model_copy(update={"address": address})})
    return config
