"""Executor configuration: files, env layering, validation messages, per-step resources."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from synapse_steps import (
    ConfigError,
    ExecutorConfig,
    LocalExecutor,
    Orchestrator,
    RuntimeContext,
    StepsError,
    UnknownStepError,
    load_config,
)
from synapse_steps.executor_factory import build_executor
from tests.steps_kit import KitContext, KitStep, registry_of

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("clean_synapse_env")]


YAML = """\
executor: ray
ray:
  address: auto
  namespace: team-a
  schedule_timeout_s: 30
defaults:
  num_cpus: 2
  max_retries: 1
steps:
  train:
    num_gpus: 1
    timeout_s: 3600
    resources: {trainer: 1}
"""

TOML = """\
executor = "ray"

[ray]
address = "auto"
namespace = "team-a"
schedule_timeout_s = 30

[defaults]
num_cpus = 2
max_retries = 1

[steps.train]
num_gpus = 1
timeout_s = 3600
resources = { trainer = 1 }
"""

DATA = {
    "executor": "ray",
    "ray": {"address": "auto", "namespace": "team-a", "schedule_timeout_s": 30},
    "defaults": {"num_cpus": 2, "max_retries": 1},
    "steps": {"train": {"num_gpus": 1, "timeout_s": 3600, "resources": {"trainer": 1}}},
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- reading files ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "text"),
    [("executor.yaml", YAML), ("executor.yml", YAML), ("executor.toml", TOML), ("executor.json", json.dumps(DATA))],
)
def test_load_config_from_a_file(tmp_path, filename, text):
    config = load_config(write(tmp_path, filename, text))
    assert config.executor == "ray"
    assert config.ray.address == "auto"
    assert config.ray.namespace == "team-a"
    assert config.ray.schedule_timeout_s == 30
    assert config.defaults.num_cpus == 2 and config.defaults.max_retries == 1
    assert set(config.steps) == {"train"}
    train = config.steps["train"]
    assert (train.num_gpus, train.timeout_s, train.resources) == (1, 3600, {"trainer": 1})


def test_load_config_accepts_a_str_path(tmp_path):
    assert load_config(str(write(tmp_path, "c.yaml", "executor: ray\n"))).executor == "ray"


def test_no_file_and_no_env_gives_the_local_defaults():
    config = load_config()
    assert config.executor == "local"
    assert config.ray.address is None
    assert config.steps == {}
    assert isinstance(build_executor(config), LocalExecutor)


def test_an_empty_yaml_file_gives_the_defaults(tmp_path):
    config = load_config(write(tmp_path, "empty.yaml", ""))
    assert config.executor == "local"


# --- environment on top of the file -------------------------------------------------


def test_env_executor_overrides_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "c.yaml", "executor: local\nray: {namespace: team-a}\n")
    monkeypatch.setenv("SYNAPSE_STEPS_EXECUTOR", "ray")
    config = load_config(path)
    assert config.executor == "ray"
    assert config.ray.namespace == "team-a"


def test_env_nested_ray_address_overrides_only_that_field(tmp_path, monkeypatch):
    path = write(tmp_path, "c.yaml", "ray: {address: 'head:6379', namespace: team-a, schedule_timeout_s: 7}\n")
    monkeypatch.setenv("SYNAPSE_STEPS_RAY__ADDRESS", "auto")
    config = load_config(path)
    assert config.ray.address == "auto"
    assert config.ray.namespace == "team-a"
    assert config.ray.schedule_timeout_s == 7


def test_arguments_in_code_beat_env_which_beats_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, "c.yaml", "executor: ray\nray: {namespace: from-file, num_cpus: 3}\n")
    monkeypatch.setenv("SYNAPSE_STEPS_RAY__NAMESPACE", "from-env")
    monkeypatch.setenv("SYNAPSE_STEPS_EXECUTOR", "ray")
    config = load_config(path, executor="local")
    assert (config.executor, config.ray.namespace, config.ray.num_cpus) == ("local", "from-env", 3)
    assert ExecutorConfig(executor="local").executor == "local"


def test_a_mistyped_env_var_is_rejected_naming_it(monkeypatch):
    monkeypatch.setenv("SYNAPSE_STEPS_EXECUTR", "ray")
    with pytest.raises(ConfigError, match=r"SYNAPSE_STEPS_EXECUTR names no config field.*SYNAPSE_STEPS_EXECUTOR"):
        load_config()


def test_env_alone_configures_without_a_file(monkeypatch):
    monkeypatch.setenv("SYNAPSE_STEPS_EXECUTOR", "ray")
    monkeypatch.setenv("SYNAPSE_STEPS_RAY__ADDRESS", "ray://head:10001")
    config = load_config()
    assert (config.executor, config.ray.address) == ("ray", "ray://head:10001")


# --- validation errors name the field -----------------------------------------------


def assert_config_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> None:
    assert isinstance(excinfo.value, ConfigError)
    assert isinstance(excinfo.value, ValueError) and isinstance(excinfo.value, StepsError)
    for fragment in fragments:
        assert fragment in str(excinfo.value), f"{fragment!r} not in {str(excinfo.value)!r}"


def test_unknown_executor_is_rejected_naming_the_field(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "c.yaml", "executor: kubernetes\n"))
    assert_config_error(info, "executor", str(tmp_path / "c.yaml"))


def test_unknown_executor_from_env_is_rejected(monkeypatch):
    monkeypatch.setenv("SYNAPSE_STEPS_EXECUTOR", "dask")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert_config_error(info, "executor")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("defaults: {num_gpus: -1}\n", "defaults.num_gpus"),
        ("steps: {train: {num_gpus: -0.5}}\n", "steps.train.num_gpus"),
        ("steps: {train: {timeout_s: 0}}\n", "steps.train.timeout_s"),
        ("ray: {progress_interval_s: 0}\n", "ray.progress_interval_s"),
        ("ray: {schedule_timeout_s: soon}\n", "ray.schedule_timeout_s"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(tmp_path, text, field):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "c.yaml", text))
    assert_config_error(info, field)


def test_bad_value_from_env_is_rejected_naming_the_field(monkeypatch):
    monkeypatch.setenv("SYNAPSE_STEPS_DEFAULTS__NUM_GPUS", "-1")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert_config_error(info, "defaults.num_gpus")


def test_malformed_json_in_a_structured_env_var_is_a_config_error(monkeypatch):
    monkeypatch.setenv("SYNAPSE_STEPS_STEPS", "{not json")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert_config_error(info, "steps")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("exector: ray\n", "exector"),
        ("ray: {adress: auto}\n", "ray.adress"),
        ("steps: {train: {gpus: 1}}\n", "steps.train.gpus"),
    ],
)
def test_unknown_keys_are_rejected_naming_them(tmp_path, text, field):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "c.yaml", text))
    assert_config_error(info, field)


def test_a_missing_file_is_a_config_error_naming_it(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert_config_error(info, str(missing))


def test_a_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert_config_error(info, str(tmp_path))


@pytest.mark.parametrize(
    ("filename", "text"),
    [("c.yaml", "executor: [unclosed\n"), ("c.toml", "executor = \n"), ("c.json", "{'executor': 'ray'}")],
)
def test_an_unparsable_file_is_a_config_error_naming_it(tmp_path, filename, text):
    path = write(tmp_path, filename, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_config_error(info, str(path))


def test_a_file_without_a_mapping_is_a_config_error(tmp_path):
    path = write(tmp_path, "c.yaml", "- executor\n- ray\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_config_error(info, str(path), "mapping")


# --- per-step overrides must name registered steps ----------------------------------


def test_the_executor_rejects_an_override_for_an_unknown_step_when_it_opens():
    config = ExecutorConfig(steps={"trian": {"num_gpus": 1}})
    executor = build_executor(config)
    with pytest.raises(UnknownStepError) as info:
        executor.open(KitContext(runtime_ctx=RuntimeContext()), [KitStep("load"), KitStep("train")])
    assert str(info.value) == (
        "config 'steps' overrides ['trian'], but no registered step has that name; registered: ['load', 'train']"
    )
    assert isinstance(info.value, ValueError)


def test_from_config_rejects_an_override_for_an_unknown_step_before_any_step_runs(tmp_path):
    path = write(tmp_path, "c.yaml", "steps:\n  trian: {num_gpus: 1}\n")
    ctx = KitContext(runtime_ctx=RuntimeContext())
    with pytest.raises(UnknownStepError, match="trian"):
        Orchestrator.from_config(registry_of("load", "train"), ctx, path).execute()
    assert ctx.trail == []


def test_from_config_with_known_overrides_runs_locally(tmp_path):
    path = write(tmp_path, "c.yaml", "executor: local\nsteps:\n  train: {num_gpus: 1}\n")
    ctx = KitContext(runtime_ctx=RuntimeContext())
    orchestrator = Orchestrator.from_config(registry_of("load", "train"), ctx, path)
    assert isinstance(orchestrator.executor, LocalExecutor)
    assert orchestrator.execute() == {"success": True, "steps_executed": 2, "steps_total": 2}
    assert [n for _, n, pid in ctx.trail] == ["load", "train"]
    assert {pid for *_, pid in ctx.trail} == {os.getpid()}


def test_from_config_accepts_a_model_and_defaults_to_env(monkeypatch):
    ctx = KitContext(runtime_ctx=RuntimeContext())
    orchestrator = Orchestrator.from_config(registry_of("a"), ctx, ExecutorConfig(executor="local"))
    assert isinstance(orchestrator.executor, LocalExecutor)
    assert isinstance(Orchestrator.from_config(registry_of("a"), ctx).executor, LocalExecutor)
    monkeypatch.setenv("SYNAPSE_STEPS_EXECUTOR", "nope")
    with pytest.raises(ConfigError, match="executor"):
        Orchestrator.from_config(registry_of("a"), ctx)


# --- resources from a file (the layers themselves: tests/test_resource_layers.py) -----------


def test_resources_from_a_file_reach_resources_for(tmp_path):
    config = load_config(write(tmp_path, "c.yaml", YAML))
    train = config.resources_for(KitStep("train"))
    load = config.resources_for(KitStep("load"))
    assert (train.num_cpus, train.num_gpus, train.timeout_s, train.max_retries) == (2, 1, 3600, 1)
    assert train.resources == {"trainer": 1}
    assert (load.num_cpus, load.num_gpus, load.timeout_s, load.resources) == (2, 0, None, {})
