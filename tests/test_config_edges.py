"""Config edge cases a hostile review found: non-finite numbers and ``ray://`` addresses.

(The resource precedence it found wrong is tested layer by layer in test_resource_layers.py.)"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synapse_steps import ConfigError, load_config

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("clean_synapse_env")]


# --- non-finite numbers are refused at load ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("defaults: {num_cpus: .inf}\n", "defaults.num_cpus"),
        ("steps: {a: {num_gpus: .inf}}\n", "steps.a.num_gpus"),
        ("steps: {a: {timeout_s: .inf}}\n", "steps.a.timeout_s"),
        ("defaults: {rollback_timeout_s: .nan}\n", "defaults.rollback_timeout_s"),
        ("defaults: {resources: {trainer: .inf}}\n", "defaults.resources.trainer"),
        ("ray: {connect_timeout_s: .inf}\n", "ray.connect_timeout_s"),
        ("ray: {schedule_timeout_s: .inf}\n", "ray.schedule_timeout_s"),
        ("ray: {actor_timeout_s: .nan}\n", "ray.actor_timeout_s"),
        ("ray: {progress_interval_s: -.inf}\n", "ray.progress_interval_s"),
    ],
)
def test_non_finite_numbers_are_refused_at_load_naming_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"invalid executor configuration in {path}: {field}: Input should be a finite number"


def test_a_non_finite_number_from_env_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNAPSE_STEPS_RAY__CONNECT_TIMEOUT_S", "inf")
    with pytest.raises(ConfigError, match=r"^invalid executor configuration: ray.connect_timeout_s: Input should be"):
        load_config()


# --- ray:// addresses --------------------------------------------------------------------------


def connect_in_a_fresh_process(address: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """``connect`` in a process with no Ray yet (in this one the session Ray may be up already)."""
    code = (
        f"{prelude}\n"
        "from ray_backend.connection import connect\n"
        "from synapse_steps import ConfigError, RaySettings\n"
        "try:\n"
        f"    connect(RaySettings(address={address!r}, connect_timeout_s=1))\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=50)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_ray_client_address_fails_fast_naming_it() -> None:
    address = f"ray://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    done = connect_in_a_fresh_process(address)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ray.address '{address}' did not answer within 1s ("), done.stdout
    assert done.stdout.rstrip().endswith("is the cluster running?")
    assert time.monotonic() - started < 30  # ray.init on a ray:// address alone waits far longer


def test_a_ray_client_address_without_ray_client_says_what_to_install() -> None:
    done = connect_in_a_fresh_process("ray://head:10001", prelude="import sys; sys.modules['grpc'] = None")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "ray.address 'ray://head:10001' needs Ray Client, which is not installed: "
        'pip install "ray[client]", or run on the cluster with Ray Jobs (synapse-steps submit / attach) instead\n'
    )
