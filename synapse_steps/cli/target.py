"""What ``synapse-steps`` runs: the action class TARGET names, and its executor config.

Everything here fails with ``CliError`` (exit status 2) and a message that names the
target or the file, before any step runs.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import pkgutil
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from synapse_steps.actions.base import BaseAction
from synapse_steps.config import ExecutorConfig, load_config
from synapse_steps.errors import StepsError

TARGET_FORMS = "'package.module:ClassName' or 'path/to/file.py:ClassName'"


class CliError(StepsError, ValueError):
    """The command cannot start (bad target, params or config); the CLI exits with status 2."""


def load_action_class(target: str) -> type[BaseAction[Any, Any]]:
    """The ``BaseAction`` subclass named by ``module:Attr`` or ``path/to/file.py:Attr``.

    A module name is resolved by ``pkgutil.resolve_name`` with the current directory on
    ``sys.path``, as ``python -m`` would. A file is imported under a private module name
    (its ``if __name__ == "__main__"`` block does not run) with its folder on
    ``sys.path``, so it can import its neighbours.
    """
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise CliError(f"TARGET {target!r} must be {TARGET_FORMS}")
    if where.endswith(".py") or "/" in where or os.sep in where:
        obj = _attribute(_import_file(Path(where)), where, attr)
    else:
        obj = _resolve(where, attr)
    if not (isinstance(obj, type) and issubclass(obj, BaseAction)):
        what = f"the class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise CliError(
            f"{target} is {what}, not an action: TARGET must name a BaseAction subclass, "
            "e.g. class MyTrain(BaseTrainAction[MyParams])"
        )
    if inspect.isabstract(obj):
        raise CliError(f"{target} is abstract: it must implement setup_steps(registry)")
    return obj


def _resolve(module: str, attr: str) -> Any:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return pkgutil.resolve_name(f"{module}:{attr}")
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise CliError(f"no module named {module!r} (TARGET must be {TARGET_FORMS})") from exc
        raise CliError(f"importing {module} failed: {exc}") from exc
    except AttributeError:
        raise CliError(f"{module} has no attribute {attr!r}") from None
    except Exception as exc:
        raise CliError(f"importing {module} failed: {type(exc).__name__}: {exc}") from exc


def _attribute(module: ModuleType, where: str, attr: str) -> Any:
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CliError(f"{where} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _import_file(path: Path) -> ModuleType:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise CliError(f"TARGET file {path} does not exist")
    name = "synapse_steps_target_" + re.sub(r"\W", "_", path.stem)
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]  # already loaded (help, then the command, in one process)
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


def build_config(path: str | None, executor: str | None, address: str | None) -> ExecutorConfig:
    """The config file layered with ``SYNAPSE_STEPS_*`` env, then the command-line flags on top.

    Raises ``ConfigError`` naming the field, as ``load_config`` does.
    """
    overrides: dict[str, Any] = {}
    if executor is not None:
        overrides["executor"] = executor
    config = load_config(path, **overrides)
    if address is not None:
        config = config.model_copy(update={"ray": config.ray.model_copy(update={"address": address})})
    return config
