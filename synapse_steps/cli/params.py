"""An action's params on the command line, typed by the action's own pydantic model.

Three ways in, lowest first: ``--params FILE`` (a YAML or JSON mapping), ``--param
KEY=VALUE`` (repeatable; dotted keys nest) and one option per model field (``--epochs
3``). A value typed on the command line is a string that the model parses: an ``int``
field turns ``007`` into 7, a ``str`` field keeps ``yes``, ``1.10`` and ``007`` as
written. Lists, dicts and nested models take JSON (``--param 'tags=["a", "b"]'``). A
key the model does not have is an error naming the closest one it does have.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from synapse_steps.cli.target import CliError

META_KEY = "synapse_steps.params"  # click ctx.meta: values given as model options
PANEL = "Action params"
_SCALARS: dict[Any, str] = {int: "INTEGER", float: "FLOAT", str: "TEXT", bool: "BOOLEAN", Path: "PATH"}


def model_options(model: type[BaseModel], taken: Iterable[str]) -> list[click.Option]:
    """One ``--field-name VALUE`` option per model field, listed under "Action params" in help.

    The value stays a string until the model parses it (``collect_params``). A field whose
    option name is taken by the command itself is set with ``--param NAME=VALUE`` only.
    """
    taken = set(taken)
    options = []
    for name, info in model.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if flag in taken:
            continue
        note = "[required]" if info.is_required() else f"[default: {_default_text(info)}]"
        option = click.Option(
            [flag, name],
            metavar=type_label(info.annotation),
            help=f"{(info.description or '').strip()}  {note}".strip(),
            default=None,
            expose_value=False,
            callback=_remember,
        )
        options.append(option)
    return options


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None and param.name is not None:
        ctx.meta.setdefault(META_KEY, {})[param.name] = value


def _default_text(info: FieldInfo) -> str:
    try:
        default = info.get_default(call_default_factory=True)
    except TypeError:  # a default_factory that needs the other fields' values
        return "computed"
    value = to_jsonable_python(default, fallback=repr)
    return value if isinstance(value, str) else json.dumps(value)


def type_label(annotation: Any) -> str:
    """``INTEGER``, ``TEXT``, ``[none|work]``, ``INTEGER|verify`` or ``JSON`` for help."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "[" + "|".join(str(v) for v in typing.get_args(annotation)) + "]"
    if origin in (typing.Union, types.UnionType):
        parts = [type_label(a) for a in typing.get_args(annotation) if a is not type(None)]
        return "|".join(p.strip("[]") for p in parts)
    if origin is typing.Annotated:
        return type_label(typing.get_args(annotation)[0])
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    return "JSON" if _wants_json(annotation) else "TEXT"


def _wants_json(annotation: Any) -> bool:
    """Lists, dicts, sets, tuples and models: only JSON can spell them on a command line."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_wants_json(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _wants_json(typing.get_args(annotation)[0])
    kind = origin or annotation
    return isinstance(kind, type) and (issubclass(kind, (BaseModel, Mapping)) or kind in (list, set, frozenset, tuple))


def _union_with_str(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and str in typing.get_args(annotation)


def collect_params(
    model: type[BaseModel], params_file: str | None, items: Sequence[str], options: Mapping[str, str]
) -> dict[str, Any]:
    """The params to validate: the file, then ``--param`` items, then model options on top.

    Raises ``CliError`` for an unreadable file, an item that is not ``KEY=VALUE``, a key
    the model does not have, or a complex value that is not JSON.
    """
    params: dict[str, Any] = _read_file(params_file) if params_file is not None else {}
    _check_keys(model, params, f"params file {params_file}")
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliError(f"--param {item!r} must be KEY=VALUE")
        _set(model, params, key.split("."), raw)
    for name, raw in options.items():
        _set(model, params, [name], raw)
    return params


def _set(model: type[BaseModel], params: dict[str, Any], path: list[str], raw: str) -> None:
    _check_keys(model, {path[0]: None}, "--param")
    node = params
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    info = model.model_fields.get(path[0])
    if len(path) == 1 and info is not None and _wants_json(info.annotation):
        try:
            node[path[-1]] = json.loads(raw)
        except json.JSONDecodeError as exc:
            if not _union_with_str(info.annotation):  # ``str | list[str]`` keeps plain text
                label = type_label(info.annotation)
                raise CliError(f"param {path[0]!r} takes JSON ({label}): {exc} in {raw!r}") from None
            node[path[-1]] = raw
    else:
        node[path[-1]] = raw


def _check_keys(model: type[BaseModel], params: Mapping[str, Any], where: str) -> None:
    if model.model_config.get("extra") == "allow":
        return
    known = list(model.model_fields)
    for key in params:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise CliError(f"unknown param {key!r} in {where}: {hint}the params are {', '.join(known)}")


def _read_file(params_file: str) -> dict[str, Any]:
    path = Path(params_file)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CliError(f"cannot read params file {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parser error is a usage error
        raise CliError(f"cannot parse params file {path}: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise CliError(f"params file {path} must hold a mapping, got {type(data).__name__}")
    return dict(data or {})


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
