"""The upload example (examples/upload) through the CLI on both executors: files land in the
destination; after a forced failure, exactly the files the run uploaded are gone and
what was there before survives."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import ROOT, cli, json_events

UPLOAD_DIR = ROOT / "examples" / "upload"
UPLOAD = f"{UPLOAD_DIR / 'action.py'}:DirectoryUploadAction"
SAMPLE = UPLOAD_DIR / "sample"
SAMPLE_FILES = sorted(p.relative_to(SAMPLE).as_posix() for p in SAMPLE.rglob("*") if p.is_file())
RAY_ENV = {"SYNAPSE_STEPS_RAY__NUM_CPUS": "2"}

pytestmark = pytest.mark.timeout(180)


def tree(folder: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def destination(tmp_path: Path) -> Path:
    """A storage location that already holds a file no run may touch."""
    dest = tmp_path / "storage"
    dest.mkdir()
    (dest / "keep.txt").write_text("uploaded by someone else\n")
    return dest


def upload(executor: str, destination: Path, *params: str) -> subprocess.CompletedProcess:
    config = UPLOAD_DIR / f"{executor}.yaml"
    args = ["run", UPLOAD, "--config", str(config), "--json", "--param", f"destination={destination}"]
    for param in params:
        args += ["--param", param]
    return cli(*args, env=RAY_ENV if executor == "ray" else None, cwd=destination.parent)


def test_sample_has_a_few_files_in_folders():
    assert len(SAMPLE_FILES) >= 3 and any("/" in f for f in SAMPLE_FILES)


def test_upload_copies_every_file_with_per_file_progress(destination):
    proc = upload("local", destination)
    assert proc.returncode == 0, proc.stderr
    assert tree(destination) == {**tree(SAMPLE), "keep.txt": tree(destination)["keep.txt"]}
    events = json_events(proc)
    upload_progress = [e["progress"] for e in events if e["event"] == "progress" and e["step"] == "upload"]
    assert len(upload_progress) == len(SAMPLE_FILES)  # one per file, inside the 10 %–90 % band
    assert [e["data"]["file"] for e in events if e["event"] == "log"] == SAMPLE_FILES
    summary = events[-1]["summary"]
    assert [s["status"] for s in summary["steps"]] == ["succeeded"] * 3
    assert summary["steps"][2]["data"] == {"verified": len(SAMPLE_FILES)}


def test_failure_after_n_files_deletes_only_what_this_run_uploaded(destination):
    before = tree(destination)
    proc = upload("local", destination, "fail_after=2")
    assert proc.returncode == 1
    end = json_events(proc)[-1]
    assert end["summary"]["failed_step"] == "upload"
    assert "forced failure after 2 uploaded file(s)" in end["error"]
    assert end["summary"]["rolled_back"] == ["upload", "collect"]
    assert tree(destination) == before
    assert sorted(os.listdir(destination)) == ["keep.txt"]  # folders the run created are gone too


def test_rollback_keeps_files_that_were_already_uploaded(destination):
    """A file already present with the same content is not this run's upload: it survives the rollback."""
    (destination / "hello.txt").write_bytes((SAMPLE / "hello.txt").read_bytes())
    before = tree(destination)
    proc = upload("local", destination, "fail_after=verify")
    assert proc.returncode == 1
    summary = json_events(proc)[-1]["summary"]
    assert summary["failed_step"] == "verify"
    assert summary["metrics"]["upload"] == {"uploaded": len(SAMPLE_FILES) - 1, "already_present": 1}
    assert tree(destination) == before


def test_a_different_file_in_the_way_is_not_overwritten(destination):
    (destination / "labels.csv").write_text("someone else's labels\n")
    before = tree(destination)
    proc = upload("local", destination)
    assert proc.returncode == 1
    end = json_events(proc)[-1]
    assert "labels.csv already exists with other content; not overwriting it" in end["error"]
    assert tree(destination) == before


@pytest.mark.slow
def test_example_runs_as_a_program(tmp_path):
    dest = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNAPSE_STEPS_")}
    proc = subprocess.run(
        [sys.executable, str(UPLOAD_DIR / "action.py"), "--destination", str(dest)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"uploaded={len(SAMPLE_FILES)} files" in proc.stdout
    assert tree(dest) == tree(SAMPLE)


@pytest.mark.slow
@pytest.mark.ray
def test_upload_on_ray(destination):
    proc = upload("ray", destination)
    assert proc.returncode == 0, (proc.stderr[-3000:], proc.stdout[-3000:])
    assert set(tree(destination)) == {*SAMPLE_FILES, "keep.txt"}
    end = json_events(proc)[-1]
    assert end["summary"]["steps"][1]["data"] == {"uploaded": len(SAMPLE_FILES), "already_present": 0}
    assert all(len(s["node"]) == 56 for s in end["summary"]["steps"])  # Ray node ids


@pytest.mark.slow
@pytest.mark.ray
def test_failed_upload_on_ray_is_rolled_back_on_the_worker(destination):
    before = tree(destination)
    proc = upload("ray", destination, "fail_after=verify")
    assert proc.returncode == 1, proc.stderr[-3000:]
    events = json_events(proc)
    summary = events[-1]["summary"]
    assert summary["rolled_back"] == ["verify", "upload", "collect"] and summary["rollback_errors"] == []
    messages = [(e["step"], e["level"], e["message"]) for e in events if e["event"] == "message"]
    assert ("upload", "warning", f"rollback: deleted {len(SAMPLE_FILES)} uploaded file(s)") in messages
    assert tree(destination) == before


# --- stopped mid-upload on Ray: the rollback deletes exactly what the run wrote -----------------


def _wait_for_upload_event(proc: subprocess.Popen[str], timeout_s: float = 90) -> list[str]:
    """Read JSON lines until the first file is uploaded; return the lines read."""
    import json
    import time

    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        event = json.loads(line)
        if event.get("event") == "log" and event.get("name") == "uploaded":
            return lines
    raise AssertionError(f"no file was uploaded: {''.join(lines)[-2000:]}")


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("stop", ["timeout", "SIGINT", "SIGTERM"])
def test_upload_on_ray_stopped_mid_upload_leaves_no_file_it_wrote(destination: Path, stop: str) -> None:
    import signal

    before = tree(destination)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNAPSE_STEPS_")}
    env.update({**RAY_ENV, "PYTHONUNBUFFERED": "1"})
    env.pop("RAY_ADDRESS", None)
    delay_s = 2
    if stop == "timeout":
        # Long enough for the first file's ctx.commit() (it waits for the run's context actor
        # to start, which the first steps do not wait for, and, journaled, for the driver) on a
        # loaded machine; shorter than the upload (4 files × delay_s).
        env["SYNAPSE_STEPS_STEPS"] = '{"upload": {"timeout_s": 10}}'
        delay_s = 4
    args = [
        "run", UPLOAD, "--config", str(UPLOAD_DIR / "ray.yaml"), "--json",
        "--param", f"destination={destination}", "--param", f"delay_s={delay_s}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "synapse_steps.cli", *args], cwd=destination.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    try:
        _wait_for_upload_event(proc)
        if stop != "timeout":
            proc.send_signal(getattr(signal, stop))
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == (1 if stop == "timeout" else 130), err[-3000:]
    assert tree(destination) == before, "a file the run wrote was left, or a file that was there is gone"
    end = [line for line in out.splitlines() if '"event": "end"' in line]
    assert end and '"rolled_back": ["upload", "collect"]' in end[-1], out[-2000:]
