"""Runs on a cluster through Ray Jobs: ``submit``, ``attach``, ``stop``, ``jobs``.

The cluster is a real one: ``ray start --head --block`` with its dashboard on
127.0.0.1 and free ports, in its own session, stopped by signalling its process group
(never ``ray stop``, which would stop every Ray on the machine). It keeps Ray's default
token auth; the commands get the token as a user would (``RAY_AUTH_MODE=token``,
``~/.ray/auth_token``).
"""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from synapse_steps.cli.replay import EventLines
from tests.ray_head import ROOT, _env, _free_port, _sigint_default, cli

UPLOAD = "examples/upload/action.py:DirectoryUploadAction"
SAMPLE_FILES = {"hello.txt", "labels.csv", "notes/fox.txt", "notes/readme.md"}


def _files(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


def _runs(url: str) -> list[dict[str, str]]:
    proc = cli("jobs", "--address", url, "--json")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _submit(url: str, destination: Path, *extra: str) -> str:
    proc = cli("submit", UPLOAD, "--address", url, "--param", f"destination={destination}", *extra)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    assert f"submitted run {run_id} to {url}" in proc.stderr
    return run_id


def _read_until(proc: subprocess.Popen[str], text: str, timeout: float) -> str:
    """Read proc's stdout until ``text`` appears; what was read."""
    assert proc.stdout is not None
    seen, deadline = "", time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, f"{text!r} did not appear; got:\n{seen}"
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            assert line, f"attach ended before {text!r}:\n{seen}"
            seen += line
    return seen


@pytest.mark.slow
def test_submit_wait_runs_the_upload_on_the_cluster(cluster: dict[str, str], tmp_path: Path) -> None:
    destination = tmp_path / "storage"
    proc = cli("submit", UPLOAD, "--address", cluster["url"], "--param", f"destination={destination}", "--wait")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.splitlines()[0]
    assert f"DirectoryUploadAction on local — 3 steps, run {run_id}" in proc.stdout
    assert "✓ succeeded: 3/3 steps" in proc.stdout
    assert _files(destination) == SAMPLE_FILES
    [row] = [r for r in _runs(cluster["url"]) if r["run_id"] == run_id]
    assert row["status"] == "SUCCEEDED" and row["target"] == UPLOAD
    assert row["entrypoint"].startswith(f"python -m synapse_steps.cli run {UPLOAD} --json --run-id {run_id}")


@pytest.mark.slow
def test_submit_wait_trains_on_the_cluster_through_ray(cluster: dict[str, str]) -> None:
    proc = cli(
        "submit", "examples/train/action.py:DigitsTrainAction", "--config", "examples/train/ray.yaml",
        "--address", cluster["url"], "--wait", "--json",
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[0]["executor"] == "ray"
    end = events[-1]
    assert end["event"] == "end" and end["exit_code"] == 0
    assert end["summary"]["metrics"]["evaluate"]["test_accuracy"] > 0.8
    assert {e["run_id"] for e in events} == {events[0]["job_id"]}


@pytest.mark.slow
def test_attach_detach_and_reattach(cluster: dict[str, str], tmp_path: Path) -> None:
    destination = tmp_path / "storage"
    run_id = _submit(cluster["url"], destination, "--param", "delay_s=1")
    attach = subprocess.Popen(
        [sys.executable, "-m", "synapse_steps.cli", "attach", run_id, "--address", cluster["url"]],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_sigint_default,
    )
    try:
        _read_until(attach, "step 2 of 3: upload started", timeout=60)
        attach.send_signal(signal.SIGINT)
        _, err = attach.communicate(timeout=15)
    finally:
        attach.kill()
    assert attach.returncode == 130
    assert f"detached: run {run_id} is still running on {cluster['url']}" in err
    assert len(_files(destination)) < len(SAMPLE_FILES)  # the run goes on without us...

    again = cli("attach", run_id, "--address", cluster["url"], timeout=60)
    assert again.returncode == 0, again.stderr
    assert "step 1 of 3: collect started" in again.stdout  # replayed from the first event
    assert "✓ succeeded: 3/3 steps" in again.stdout
    assert _files(destination) == SAMPLE_FILES  # ...and finished


@pytest.mark.slow
def test_stop_rolls_the_run_back(cluster: dict[str, str], tmp_path: Path) -> None:
    destination = tmp_path / "storage"
    run_id = _submit(cluster["url"], destination, "--param", "delay_s=1")
    deadline = time.monotonic() + 60
    while not (destination.is_dir() and _files(destination)):
        assert time.monotonic() < deadline, "the run uploaded nothing"
        time.sleep(0.2)
    proc = cli("stop", run_id, "--address", cluster["url"], timeout=90)
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert f"run {run_id} stopped on {cluster['url']}" in proc.stdout
    assert "interrupted (received signal SIGTERM)" in proc.stdout
    assert "rolled back (last first): upload, collect" in proc.stdout
    assert not destination.exists() or _files(destination) == set()
    [row] = [r for r in _runs(cluster["url"]) if r["run_id"] == run_id]
    assert row["status"] == "STOPPED"


@pytest.mark.slow
def test_bad_input_submits_nothing(cluster: dict[str, str], tmp_path: Path) -> None:
    url, before = cluster["url"], _runs(cluster["url"])
    bad_params = cli("submit", UPLOAD, "--address", url, "--param", f"destination={tmp_path}", "--param", "delay_s=99")
    assert bad_params.returncode == 2
    assert bad_params.stderr.startswith("error: params: params.delay_s: Input should be less than or equal to 10")
    assert bad_params.stderr.rstrip().endswith("nothing was submitted")
    assert len(bad_params.stderr.strip().splitlines()) == 1

    too_big = cli(
        "submit", UPLOAD, "--address", url, "--param", f"destination={tmp_path}",
        env=_env({"RAY_max_grpc_message_size": "4096"}),  # Ray's own limit, lowered
    )
    assert too_big.returncode == 2
    assert f"error: working dir {ROOT} is " in too_big.stderr
    assert "over Ray's upload limit of 4.0 KiB" in too_big.stderr and "nothing was submitted" in too_big.stderr

    assert _runs(url) == before
    assert not (tmp_path / "hello.txt").exists()


@pytest.mark.slow
def test_unknown_run_and_wrong_addresses_fail_fast(cluster: dict[str, str]) -> None:
    url = cluster["url"]
    for command in ("attach", "stop"):
        proc = cli(command, "nope-123", "--address", url)
        assert proc.returncode == 2
        assert proc.stderr == f"error: no run 'nope-123' on {url} (synapse-steps jobs --address {url} lists them)\n"

    started = time.monotonic()
    gcs = cli("jobs", "--address", f"127.0.0.1:{cluster['gcs']}")
    assert gcs.returncode == 2
    assert gcs.stderr.startswith(f"error: http://127.0.0.1:{cluster['gcs']} answers but is not a Ray dashboard")
    assert "it looks like Ray's GCS port" in gcs.stderr and "dashboard port (8265 unless changed)" in gcs.stderr

    no_token = cli("jobs", "--address", url, env=_env({"RAY_AUTH_MODE": "disabled"}))
    assert no_token.returncode == 2
    assert no_token.stderr.startswith(f"error: {url} requires Ray's auth token (401")
    assert "set RAY_AUTH_MODE=token and the cluster's token" in no_token.stderr
    assert time.monotonic() - started < 20  # both, with interpreter start-up: no 20-second hang


def test_an_address_that_does_not_answer_fails_in_seconds() -> None:
    port = _free_port()
    started = time.monotonic()
    proc = cli("submit", UPLOAD, "--address", f"http://127.0.0.1:{port}", "--param", "destination=/tmp/x")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: http://127.0.0.1:{port} did not answer within 3s")
    assert time.monotonic() - started < 15


@pytest.mark.slow
def test_a_web_server_that_is_not_a_dashboard_and_a_missing_token_are_named(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        web = cli("jobs", "--address", f"127.0.0.1:{port}", env=_env({"RAY_AUTH_MODE": "disabled"}))
        assert web.returncode == 2
        assert web.stderr == (
            f"error: {url} answers but is not a Ray dashboard (HTTP 404 without a Ray version); "
            "the Jobs API is on the dashboard port (8265 unless changed), e.g. http://HEAD:8265\n"
        )
        missing = tmp_path / "no-such-token"
        no_token = cli("stop", "r1", "--address", url, env=_env({"RAY_AUTH_TOKEN_PATH": str(missing)}))
        assert no_token.returncode == 2
        assert no_token.stderr.startswith(f"error: no auth token for {url} (RAY_AUTH_MODE=token): RAY_AUTH_TOKEN_PATH")
        assert len(no_token.stderr.splitlines()) == 1
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_files_outside_the_working_dir_are_refused_before_connecting() -> None:
    proc = cli("submit", UPLOAD, "--working-dir", "examples/train", "--address", "http://127.0.0.1:1",
               "--param", "destination=/tmp/x")
    assert proc.returncode == 2
    assert proc.stderr == (
        f"error: TARGET examples/upload/action.py is outside the working dir {ROOT / 'examples/train'}: "
        "the job would not see it\n"
    )


def test_run_takes_the_run_id_submit_gives_it(tmp_path: Path) -> None:
    proc = cli("run", UPLOAD, "--param", f"destination={tmp_path}", "--json", "--run-id", "job-7_a")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {e["run_id"] for e in events} == {"job-7_a"} and events[0]["job_id"] == "job-7_a"
    bad = cli("run", UPLOAD, "--param", f"destination={tmp_path}", "--run-id", "a b")
    assert bad.returncode == 2
    assert "Invalid value for '--run-id': 'a b': use letters, digits, '-' and '_'" in bad.stderr


def test_the_excludes_leave_out_git_virtualenvs_artifacts_and_caches_in_rays_own_zip(tmp_path: Path) -> None:
    from ray._private.runtime_env.packaging import create_package

    from ray_backend.job_package import scan

    for path, data in {
        "src/pkg/a.py": "x = 1\n", "action.py": "y = 2\n", ".git/HEAD": "ref", "myenv/pyvenv.cfg": "home = /usr",
        "myenv/lib/big.so": "0" * 5000, "artifacts/model.pkl": "m", "src/pkg/__pycache__/a.pyc": "c",
        ".pytest_cache/v": "c", "src/pkg/x.egg-info/PKG-INFO": "i",
    }.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(data)
    excludes, sizes = scan(tmp_path)
    assert sizes == {"src": 6, "action.py": 6}
    assert "/myenv/" in excludes
    zipped = tmp_path.parent / f"{tmp_path.name}.zip"
    create_package(str(tmp_path), zipped, include_gitignore=True, excludes=excludes)
    names = {n for n in zipfile.ZipFile(zipped).namelist() if not n.endswith("/")}
    assert names == {"src/pkg/a.py", "action.py"}


def test_event_lines_keep_only_the_runs_complete_event_lines() -> None:
    lines = EventLines("r1")
    start = '{"event": "start", "run_id": "r1", "step": null}'
    log = f"(raylet) noise\n{start}\n" + '{"event": "step", "run_id": "other"}\n{"event": "end", "run_id": "r1", "exit'
    assert [event["event"] for _, event in lines.new_events(log)] == ["start"]
    log += '_code": 0}\n'
    assert [event["event"] for _, event in lines.new_events(log)] == ["end"]
    assert lines.end == {"event": "end", "run_id": "r1", "exit_code": 0}
    assert lines.new_events(log, final=True) == []
