"""Executor configuration: one pydantic settings model, from a YAML/TOML file and env.

Precedence, lowest first: built-in defaults, the file, ``SYNAPSE_STEPS_*``
environment variables (nested with ``__``, e.g. ``SYNAPSE_STEPS_RAY__ADDRESS=auto``).
So the same action moves between in-process and Ray by changing one value::

    executor: ray          # or: SYNAPSE_STEPS_EXECUTOR=ray
    ray:
      address: auto        # omit to start a local Ray for the run
    steps:
      train: {num_gpus: 1, timeout_s: 3600}
"""

from __future__ import annotations

import json
import os
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from synapse_steps.errors import ConfigError, UnknownStepError
from synapse_steps.resources import StepResources, describe_errors, resolve
from synapse_steps.step import declared_resources


class StepOptions(StepResources):
    """``StepResources`` as the config file holds them (``defaults``, ``steps.NAME``): same fields, same checks.

    Only the error report differs. Pydantic runs a model's own ``__init__`` for nested
    values too, and ``StepResources.__init__`` turns errors into one line without their
    place in the file; this keeps pydantic's, so ``load_config`` can name the full path
    (``steps.train.num_gpus``).
    """

    __init__ = BaseModel.__init__


class RaySettings(BaseModel):
    """How to reach Ray and how a run behaves on it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # .inf would fail later, in Ray

    address: str | None = Field(
        None,
        description="Cluster to join ('auto', 'host:port', 'ray://host:10001'). "
        "None: RAY_ADDRESS if set, else start a local Ray for the run and stop it after.",
    )
    namespace: str = Field(
        "synapse-steps", min_length=1, description="Ray namespace of the driver's context actor (shared by its runs)."
    )
    runtime_env: dict[str, Any] | None = Field(None, description="Ray runtime_env for every step's task.")
    num_cpus: int | None = Field(None, gt=0, description="CPUs of a locally started Ray (default: all).")
    schedule_timeout_s: float = Field(
        120.0, gt=0, description="Fail a step that no node can start within this many seconds."
    )
    progress_interval_s: float = Field(0.1, gt=0, le=5, description="How often the driver reads worker progress.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Fail fast when the cluster address does not answer.")
    actor_timeout_s: float = Field(
        10.0, gt=0, description="A context actor that does not answer within this many seconds is replaced."
    )
    actor_idle_s: float = Field(
        2.0, ge=0, description="How long the driver's context actor waits for its next run before it ends "
        "(0: it ends with the last run using it).",
    )


class ExecutorConfig(BaseSettings):
    """Where steps run. Field descriptions are the reference for the config file."""

    model_config = SettingsConfigDict(env_prefix="SYNAPSE_STEPS_", env_nested_delimiter="__", extra="forbid")

    executor: Literal["local", "ray"] = Field("local", description="'local' (in-process) or 'ray'.")
    ray: RaySettings = Field(default_factory=RaySettings)
    defaults: StepOptions = Field(
        default_factory=StepOptions, description="Every step's resources, below what the step declares."
    )
    steps: dict[str, StepOptions] = Field(
        default_factory=dict, description="Resources by step name, above what the step declares."
    )
    journal: str | None = Field(
        None,
        description="Run journal URL (sqlite:///PATH or postgresql+psycopg://USER@HOST/DB) that makes runs "
        "resumable; None: no journal from Python, the per-user default from the CLI.",
    )
    journal_blobs: str | None = Field(
        None,
        description="Where the journal keeps context values of 1 MiB or more: a folder or an fsspec URL "
        "(s3://...); None: next to a SQLite journal, the per-user state folder for Postgres.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments in code > ``SYNAPSE_STEPS_*`` env vars > the config file > defaults.

        The file is whichever of ``yaml_file``, ``toml_file`` or ``json_file`` the model's
        config names (``load_config`` sets one); pydantic-settings reads and parses it.
        """
        files = (
            YamlConfigSettingsSource(settings_cls),
            TomlConfigSettingsSource(settings_cls),
            JsonConfigSettingsSource(settings_cls),
        )
        return (init_settings, env_settings, *files)

    def resources_for(self, step: Any) -> StepResources:
        """The step's resources: built-in defaults < ``defaults`` < what the step declares < ``steps[NAME]``.

        Raises:
            ValueError: the step's own ``resources`` declaration is invalid.
        """
        return resolve(self.defaults, declared_resources(step), self.steps.get(step.name))

    def check_step_names(self, step_names: list[str]) -> None:
        """Refuse overrides for steps that do not exist: a misspelt name would be ignored silently."""
        unknown = sorted(set(self.steps) - set(step_names))
        if unknown:
            raise UnknownStepError(
                f"config 'steps' overrides {unknown}, but no registered step has that name; registered: {step_names}"
            )


def load_config(path: str | PathLike[str] | None = None, **overrides: Any) -> ExecutorConfig:
    """Read a YAML, TOML or JSON file (optional), layer env vars on top, validate.

    Raises ConfigError naming the offending field, e.g. ``ray.schedule_timeout_s``.
    """
    _reject_unknown_env_vars()
    settings_cls = ExecutorConfig if path is None else _reading(Path(path))
    try:
        config = settings_cls(**overrides)
    except ValidationError as exc:
        where = f" in {path}" if path is not None else ""
        raise ConfigError(f"invalid executor configuration{where}: {describe_errors(exc)}") from None
    except SettingsError as exc:  # an env var that is not valid JSON for a nested field
        raise ConfigError(f"invalid executor configuration in SYNAPSE_STEPS_* environment variables: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the file's parser (YAML, TOML, JSON) failed
        raise ConfigError(f"cannot parse config file {path}: {exc}") from None
    if settings_cls is ExecutorConfig:
        return config
    # A plain ExecutorConfig, so the config pickles (to Ray workers) like any other.
    return ExecutorConfig.model_construct(_fields_set=config.model_fields_set, **dict(config))


_FILE_KEYS = {".toml": "toml_file", ".json": "json_file"}  # anything else is read as YAML


def _reading(path: Path) -> type[ExecutorConfig]:
    """``ExecutorConfig`` with ``path`` as its lowest-ranked source, read by pydantic-settings.

    pydantic-settings' file sources take their file from the model's config, so each
    file gets a subclass naming it; ``settings_customise_sources`` ranks it below env.
    The file must exist and hold a mapping (the sources would skip a missing file).
    """
    try:
        with path.open("rb") as stream:
            head = stream.read(1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    key = _FILE_KEYS.get(path.suffix, "yaml_file")
    if head and key != "toml_file":
        _require_mapping(path, key)
    return type("ExecutorConfig", (ExecutorConfig,), {"model_config": {**ExecutorConfig.model_config, key: path}})


def _require_mapping(path: Path, key: str) -> None:
    """A YAML or JSON file whose top level is a list would otherwise fail deep inside the source."""
    try:
        if key == "json_file":
            data = json.loads(path.read_text())
        else:
            import yaml

            data = yaml.safe_load(path.read_text())
    except Exception as exc:  # noqa: BLE001 - any parser error is a config error
        raise ConfigError(f"cannot parse config file {path}: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, got {type(data).__name__}")


def _reject_unknown_env_vars() -> None:
    """A mistyped ``SYNAPSE_STEPS_EXECUTR`` would otherwise be ignored without a word."""
    prefix = ExecutorConfig.model_config["env_prefix"]
    known = set(ExecutorConfig.model_fields)
    for name in os.environ:
        if name.upper().startswith(prefix):
            field = name[len(prefix) :].lower().split("__", 1)[0]
            if field not in known:
                raise ConfigError(
                    f"environment variable {name} names no config field; known: "
                    + ", ".join(f"{prefix}{k.upper()}" for k in sorted(known))
                )
