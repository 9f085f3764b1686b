"""Joining a cluster started separately (``ray start --head``): use it, never stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray]

DRIVER = textwrap.dedent(
    """
    import os
    from dataclasses import dataclass, field
    import ray
    from synapse_steps import BaseStep, BaseStepContext, Orchestrator, RuntimeContext, StepRegistry, StepResult

    @dataclass
    class JoinContext(BaseStepContext):
        nodes: list = field(default_factory=list)

    class WhereStep(BaseStep[JoinContext]):
        name = "where"
        progress_weight = 1.0

        def execute(self, ctx):
            ctx.nodes.append(ray.get_runtime_context().gcs_address)
            return StepResult()

    if __name__ == "__main__":
        registry = StepRegistry()
        registry.register(WhereStep())
        ctx = JoinContext(runtime_ctx=RuntimeContext())
        print(Orchestrator.from_config(registry, ctx).execute())
        print("ran-on", ctx.nodes[0].rsplit(":", 1)[1], "connected-after", ray.is_initialized())
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def external_head() -> Iterator[int]:
    """A head started by ``ray start --block`` in its own process group, stopped by us only."""
    port = _free_port()
    temp_dir = f"/tmp/ss-join-{os.getpid()}"
    ray_cli = str(Path(sys.executable).with_name("ray"))
    proc = subprocess.Popen(
        [ray_cli, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
         f"--temp-dir={temp_dir}", "--block"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _answers(port):
            assert proc.poll() is None and time.monotonic() < deadline, "ray start --head did not come up"
            time.sleep(0.3)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # `ray start --block` stops its processes on SIGINT in ~1 s
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _run_driver(tmp_path: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "join_driver.py"
    script.write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNAPSE_STEPS_", "RAY_ADDRESS", "RAY_AUTH_MODE"))}
    env.update({"SYNAPSE_STEPS_EXECUTOR": "ray", **env_extra})
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


TOKEN_AUTH = {"RAY_AUTH_MODE": "token"}  # the head uses Ray's default token auth; ~/.ray/auth_token holds it


def test_run_joins_the_configured_cluster_and_leaves_it_running(external_head: int, tmp_path: Path) -> None:
    for attempt in range(2):  # the second run proves the first left the cluster usable
        proc = _run_driver(tmp_path, {"SYNAPSE_STEPS_RAY__ADDRESS": f"127.0.0.1:{external_head}", **TOKEN_AUTH})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "{'success': True, 'steps_executed': 1, 'steps_total': 1}" in proc.stdout
        assert f"ran-on {external_head} connected-after False" in proc.stdout
        assert _answers(external_head), f"the cluster stopped after run {attempt + 1}"


def test_ray_address_env_var_is_honoured(external_head: int, tmp_path: Path) -> None:
    proc = _run_driver(tmp_path, {"RAY_ADDRESS": f"127.0.0.1:{external_head}", **TOKEN_AUTH})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"ran-on {external_head}" in proc.stdout


def test_unreachable_address_fails_fast_naming_the_field(tmp_path: Path) -> None:
    start = time.monotonic()
    proc = _run_driver(tmp_path, {"SYNAPSE_STEPS_RAY__ADDRESS": f"127.0.0.1:{_free_port()}",
                                  "SYNAPSE_STEPS_RAY__CONNECT_TIMEOUT_S": "2"})
    assert proc.returncode != 0
    assert "ConfigError" in proc.stderr and "ray.address" in proc.stderr and "did not answer" in proc.stderr
    assert time.monotonic() - start < 30


def test_joining_a_token_auth_cluster_without_token_mode_says_how_to_fix_it(
    external_head: int, tmp_path: Path
) -> None:
    proc = _run_driver(tmp_path, {"SYNAPSE_STEPS_RAY__ADDRESS": f"127.0.0.1:{external_head}"})
    assert proc.returncode != 0
    assert "could not join the cluster" in proc.stderr and "RAY_AUTH_MODE=token" in proc.stderr
