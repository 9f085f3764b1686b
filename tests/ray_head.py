"""A real Ray head for tests that need one outliving their drivers: ``ray start --head --block``.

With its dashboard (the Jobs API) on 127.0.0.1 and free ports, in its own session,
stopped by signalling its process group (never ``ray stop``, which would stop every
Ray on the machine). It keeps Ray's default token auth; commands get the token as a
user would (``RAY_AUTH_MODE=token``, ``~/.ray/auth_token``). ``cli`` runs the
``synapse-steps`` command in a subprocess with that environment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
TOKEN = {"RAY_AUTH_MODE": "token"}  # the cluster's token is in ~/.ray/auth_token, as `ray start` left it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sigint_default() -> None:
    """Ctrl-C works in the child even when these tests run in a background job (SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNAPSE_STEPS_", "RAY_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` on the cluster
    env["PYTHONPATH"] = str(ROOT)
    env.update(TOKEN)
    env.update(extra or {})
    return env


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synapse_steps.cli", *args],
        check=False,
        cwd=ROOT,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    """A head with the dashboard (Jobs API): ``{"url": http://127.0.0.1:PORT, "gcs": PORT}``."""
    gcs, dashboard = _free_port(), _free_port()
    temp_dir = tempfile.mkdtemp(prefix="ssj-", dir="/tmp")  # short: AF_UNIX socket paths
    ray_cli = str(Path(sys.executable).with_name("ray"))
    proc = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", f"--port={gcs}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={_free_port()}",
         f"--ray-client-server-port={_free_port()}", "--num-cpus=2", f"--temp-dir={temp_dir}"],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=_sigint_default,
    )
    url = f"http://127.0.0.1:{dashboard}"
    token_file = Path.home() / ".ray" / "auth_token"  # Ray's default: `ray start` writes it if missing
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the head's Jobs API did not come up"
            try:  # ready once the Jobs API lists jobs, not merely when the dashboard answers
                headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
                if requests.get(f"{url}/api/jobs/", headers=headers, timeout=2).status_code == 200:
                    break
            except (OSError, requests.RequestException):
                pass
            time.sleep(0.5)
        yield {"url": url, "gcs": str(gcs)}
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # `ray start --block` stops its processes on SIGINT
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
