"""``cluster.yaml`` is a launcher config Ray itself accepts, and it keeps the cluster private.

``ray up`` reads a config in this order (``ray.autoscaler._private.commands._bootstrap_config``):

1. ``prepare_config``: merges the provider's ``defaults.yaml`` (``ray/autoscaler/aws/``),
   folds ``setup_commands`` into the head and worker setup commands, fills per-type
   ``min_workers``/``max_workers``. Offline: it only reads files shipped with Ray.
2. ``fillout_available_node_types_resources``: asks EC2 for each instance type's vCPUs,
   memory and GPUs. Needs ``boto3`` and AWS credentials; ``ray up`` only warns if it fails.
3. ``validate_config``: ``jsonschema`` against ``ray/autoscaler/ray-schema.json`` (unknown
   keys are errors), then the head type and ``min_workers`` <= ``max_workers`` checks.
4. The provider's ``bootstrap_config``: IAM role, key pair, security group. Needs AWS.

These tests run steps 1 and 3 with Ray's own functions, exactly as ``ray up`` calls them, so
they need only the ``ray`` extra (``jsonschema`` and ``packaging`` come with ``ray``), no
``boto3``, credentials or network. Steps 2 and 4 are left to a real ``ray up``.

The remaining tests pin what the schema cannot see: the dashboard bound to localhost, token
auth on every ``ray start``, this package installed on every node, and a GPU node type.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("ray", reason='cluster.yaml is validated by Ray: pip install "synapse-steps[ray]"')

import jsonschema
from packaging.requirements import Requirement
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture(scope="module")
def raw_config() -> dict[str, Any]:
    """The file as written (before Ray fills in defaults)."""
    with CLUSTER_YAML.open() as f:
        return yaml.safe_load(f)


@pytest.fixture
def config(raw_config: dict[str, Any]) -> dict[str, Any]:
    """The config as ``ray up`` validates it: merged with AWS defaults, setup commands folded in."""
    return prepare_config(copy.deepcopy(raw_config))


def _ray_validate(raw: dict[str, Any]) -> None:
    """Ray's offline part of ``ray up`` validation (see the module docstring)."""
    validate_config(prepare_config(copy.deepcopy(raw)))


def _ray_start_commands(commands: list[str]) -> list[list[str]]:
    """Each ``ray start`` invocation in ``commands``, split into words (shell env prefix kept)."""
    found = []
    for command in commands:
        for part in command.split(";"):
            words = shlex.split(part)
            if "ray" in words and words[words.index("ray") + 1 : words.index("ray") + 2] == ["start"]:
                found.append(words)
    return found


def _worker_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in config["available_node_types"].items() if name != config["head_node_type"]}


# --- Ray's own schema -------------------------------------------------------------------------


def test_ray_launcher_schema_accepts_cluster_yaml(raw_config: dict[str, Any]) -> None:
    assert raw_config["provider"]["type"] == "aws"
    _ray_validate(raw_config)


def _typo_in_node_type(cfg: dict[str, Any]) -> None:
    spec = _worker_types(cfg)["ray.worker.cpu"]
    spec["min_worker"] = spec.pop("min_workers")


def _typo_at_top_level(cfg: dict[str, Any]) -> None:
    cfg["worker_start_ray_command"] = cfg.pop("worker_start_ray_commands")


def _gpu_count_as_text(cfg: dict[str, Any]) -> None:
    cfg["available_node_types"]["ray.worker.gpu"]["resources"]["GPU"] = "1"


def _min_workers_above_cluster_max(cfg: dict[str, Any]) -> None:
    cfg["available_node_types"]["ray.worker.gpu"]["min_workers"] = cfg["max_workers"] + 1


@pytest.mark.parametrize(
    ("break_config", "error"),
    [
        (_typo_in_node_type, jsonschema.ValidationError),
        (_typo_at_top_level, jsonschema.ValidationError),
        (_gpu_count_as_text, jsonschema.ValidationError),
        (_min_workers_above_cluster_max, ValueError),
    ],
    ids=["min_worker-typo", "top-level-typo", "gpu-as-string", "min-above-max"],
)
def test_ray_launcher_schema_rejects_a_broken_copy(
    raw_config: dict[str, Any], break_config: Any, error: type[Exception]
) -> None:
    """The validation above can fail: the same call rejects a copy with one mistake."""
    broken = copy.deepcopy(raw_config)
    break_config(broken)
    with pytest.raises(error):
        _ray_validate(broken)


# --- What the schema cannot see ---------------------------------------------------------------


def test_head_binds_dashboard_to_localhost_only(config: dict[str, Any]) -> None:
    (head_start,) = _ray_start_commands(config["head_start_ray_commands"])
    assert "--head" in head_start
    dashboard_hosts = [w.split("=", 1)[1] for w in head_start if w.startswith("--dashboard-host=")]
    assert dashboard_hosts == ["127.0.0.1"]
    assert "0.0.0.0" not in " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])


def test_security_group_admits_no_public_rule(config: dict[str, Any]) -> None:
    """Ray adds only cluster-internal traffic and SSH; the file must not open anything else."""
    rules = config["provider"]["security_group"].get("IpPermissions", [])
    public = [r for r in rules if any(ip.get("CidrIp") == "0.0.0.0/0" for ip in r.get("IpRanges", []))]
    public += [r for r in rules if any(ip.get("CidrIpv6") == "::/0" for ip in r.get("Ipv6Ranges", []))]
    assert public == []


def test_token_auth_on_every_ray_start(config: dict[str, Any]) -> None:
    starts = _ray_start_commands(config["head_start_ray_commands"]) + _ray_start_commands(
        config["worker_start_ray_commands"]
    )
    assert len(starts) == 2, "expected one `ray start` on the head and one on workers"
    for words in starts:
        env = words[: words.index("ray")]
        assert "RAY_AUTH_MODE=token" in env, f"token auth is off in: {shlex.join(words)}"
    # The token itself reaches every node (ray start does not create one when joining).
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert "RAY_AUTH_MODE=disabled" not in CLUSTER_YAML.read_text()


@pytest.mark.parametrize("commands", ["head_setup_commands", "worker_setup_commands"])
def test_every_node_installs_synapse_steps_with_ray_extra(config: dict[str, Any], commands: str) -> None:
    requirements = []
    for command in config[commands]:
        words = shlex.split(command)
        if words[:2] == ["pip", "install"]:
            requirements += [Requirement(w) for w in words[2:] if not w.startswith("-")]
    ours = [r for r in requirements if r.name == "synapse-steps"]
    assert len(ours) == 1, f"{commands} must install synapse-steps once: {config[commands]}"
    assert "ray" in ours[0].extras
    assert any(r.name == "ray" and "default" in r.extras for r in requirements), "nodes need ray[default]"


def test_gpu_and_cpu_worker_types(config: dict[str, Any]) -> None:
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = _worker_types(config)
    gpu = {name: spec for name, spec in workers.items() if spec["resources"].get("GPU", 0) >= 1}
    cpu = {name: spec for name, spec in workers.items() if spec["resources"].get("GPU", 0) == 0}
    assert gpu, "no worker node type declares a GPU"
    assert cpu, "no CPU-only worker node type"
    for spec in workers.values():
        assert 0 <= spec["min_workers"] <= spec["max_workers"]


def test_placeholders_are_caps(raw_config: dict[str, Any]) -> None:
    text = CLUSTER_YAML.read_text()
    assert re.findall(r"(?i)your_\w+", text) == re.findall(r"YOUR_[A-Z0-9_]+", text)
    assert "YOUR_ORG" in text and "YOUR_AWS_REGION" in text


def test_every_key_is_commented() -> None:
    """Like Ray's example configs: a comment on, or just above, every line that sets a key."""
    lines = CLUSTER_YAML.read_text().splitlines()
    key_line = re.compile(r"""^\s*(- )?["'~\w./-]+["']?:(\s|$)""")
    uncommented = [
        f"{n + 1}: {line.strip()}"
        for n, line in enumerate(lines)
        if key_line.match(line) and "#" not in line and not lines[n - 1].lstrip().startswith("#")
    ]
    assert uncommented == []
