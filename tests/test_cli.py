"""The ``synapse-steps`` command line, driven as a subprocess: exit codes, the live view's
summary, ``--json`` events (stdout holds nothing else), ``validate``, and the train
example on both executors (real Ray, started by the subprocess itself)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRAIN = f"{ROOT / 'examples' / 'train' / 'action.py'}:DigitsTrainAction"
TRAIN_RAY_CONFIG = str(ROOT / "examples" / "train" / "ray.yaml")

pytestmark = pytest.mark.timeout(180)

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"  # the UTC time that starts each plain output line


def _installed() -> bool:
    try:
        importlib.metadata.version("synapse-steps")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# A small action written to a file, so the tests also cover ``path/to/file.py:Class`` targets.
# The first step writes to file descriptor 1 and prints, as Ray and chatty libraries do.
ACTION_SOURCE = textwrap.dedent(
    """
    import os
    from typing import Literal

    from pydantic import BaseModel, Field

    from synapse_steps import BaseStep, BaseTrainAction, StepResult


    class Params(BaseModel):
        count: int = Field(4, ge=1)
        fail: Literal["none", "work"] = "none"
        broken_rollback: bool = False


    class Prepare(BaseStep):
        name = "prepare"
        progress_weight = 1

        def execute(self, ctx):
            os.write(1, b"raw noise on fd 1\\n")
            print("printed noise", flush=True)
            ctx.log("prepared", {"count": ctx.params["count"]})
            ctx.log_message("preparing done")
            return StepResult(data={"count": ctx.params["count"]})

        def rollback(self, ctx, result):
            if ctx.params["broken_rollback"]:
                raise OSError("cannot undo prepare")


    class Work(BaseStep):
        name = "work"
        progress_weight = 3

        def execute(self, ctx):
            count = ctx.params["count"]
            for i in range(1, count + 1):
                ctx.set_metrics({"done": i})
                ctx.set_progress(i, count)
            if ctx.params["fail"] == "work":
                raise RuntimeError("work exploded")
            return StepResult(data={"done": count})


    class Finish(BaseStep):
        name = "finish"
        progress_weight = 1

        def execute(self, ctx):
            return StepResult()


    class SmallAction(BaseTrainAction[Params]):
        def setup_steps(self, registry):
            registry.register(Prepare())
            registry.register(Work())
            registry.register(Finish())
    """
)


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``python -m synapse_steps.cli ARGS`` with no SYNAPSE_STEPS_* settings leaking in from the caller."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SYNAPSE_STEPS_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "synapse_steps.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def json_events(proc: subprocess.CompletedProcess) -> list[dict[str, Any]]:
    """Every stdout line parsed as JSON (fails on any line that is not)."""
    lines = proc.stdout.splitlines()
    assert lines, f"no stdout; stderr:\n{proc.stderr}"
    return [json.loads(line) for line in lines]


@pytest.fixture
def small_action(tmp_path: Path) -> str:
    path = tmp_path / "small_action.py"
    path.write_text(ACTION_SOURCE)
    return f"{path}:SmallAction"


# --- run: exit codes and the live view ------------------------------------------------


def test_run_success_exits_0_with_a_summary_table(small_action, tmp_path):
    proc = cli("run", small_action, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(rf"^{STAMP} run succeeded at 100% after [0-9.]+ s$", out, re.M), out
    for step in ("prepare", "work", "finish"):
        assert any(step in line and "succeeded" in line and "local" in line for line in out.splitlines()), out
    assert "✓ succeeded: 3/3 steps" in out
    assert "preparing done" in out  # step messages show above the bar
    assert "metrics [work] done=4" in out
    assert "result [work] done=4" in out  # each step's result data, e.g. the train example's model path


def test_run_failure_exits_1_with_the_rollback_summary(small_action):
    proc = cli("run", small_action, "--param", "fail=work", "--param", "broken_rollback=true")
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "✗ run failed: Step 'work' failed: work exploded" in out
    assert "rolled back (last first): work, prepare" in out
    assert "rollback errors: Rollback failed for step 'prepare': cannot undo prepare" in out
    finish_row = next(line for line in out.splitlines() if "finish" in line and "│" in line)
    assert "pending" in finish_row
    assert "RuntimeError: work exploded" in proc.stderr  # the failing step's traceback


def test_json_stdout_holds_only_json_events(small_action):
    proc = cli("run", small_action, "--json")
    assert proc.returncode == 0, proc.stderr
    events = json_events(proc)
    # What the step wrote to fd 1 and printed went to stderr instead.
    assert "raw noise on fd 1" in proc.stderr and "printed noise" in proc.stderr
    assert "noise" not in proc.stdout

    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
    assert [s["name"] for s in events[0]["steps"]] == ["prepare", "work", "finish"]
    progress = [e["progress"] for e in events if e["event"] == "progress"]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert {e["step"] for e in events if e["event"] == "progress"} == {"prepare", "work", "finish"}
    assert any(e["event"] == "progress" and e["step"] == "work" and 0.2 < e["progress"] < 0.8 for e in events)
    statuses = [(e["step"], e["status"]) for e in events if e["event"] == "step"]
    assert statuses == [
        ("prepare", "running"),
        ("prepare", "succeeded"),
        ("work", "running"),
        ("work", "succeeded"),
        ("finish", "running"),
        ("finish", "succeeded"),
    ]
    [log] = [e for e in events if e["event"] == "log"]
    assert {k: log[k] for k in ("step", "name", "level", "data", "file")} == {
        "step": "prepare",
        "name": "prepared",
        "level": "info",
        "data": {"count": 4},
        "file": None,
    }
    [message] = [e for e in events if e["event"] == "message"]
    assert (message["step"], message["level"], message["message"]) == ("prepare", "info", "preparing done")
    assert [e["data"]["done"] for e in events if e["event"] == "metrics"] == [1, 2, 3, 4]

    end = events[-1]
    assert end["success"] is True and end["exit_code"] == 0 and end["error"] is None
    summary = end["summary"]
    assert summary["steps_executed"] == 3 and summary["steps_total"] == 3 and summary["rolled_back"] == []
    assert [(s["step"], s["status"], s["node"]) for s in summary["steps"]] == [
        ("prepare", "succeeded", "local"),
        ("work", "succeeded", "local"),
        ("finish", "succeeded", "local"),
    ]
    assert summary["steps"][1]["data"] == {"done": 4}
    assert summary["metrics"] == {"work": {"done": 4}}


def test_json_failure_end_event_names_step_rollbacks_and_errors(small_action):
    proc = cli("run", small_action, "--json", "--param", "fail=work", "--param", "broken_rollback=true")
    assert proc.returncode == 1
    end = json_events(proc)[-1]
    assert end["event"] == "end" and end["success"] is False and end["exit_code"] == 1
    summary = end["summary"]
    assert summary["failed_step"] == "work"
    assert end["error"].startswith("Step 'work' failed: work exploded")
    assert "RuntimeError: work exploded" in summary["traceback"]
    assert summary["rolled_back"] == ["work", "prepare"]
    assert summary["rollback_errors"] == ["Rollback failed for step 'prepare': cannot undo prepare"]
    assert [(s["step"], s["status"], s["rollback"]) for s in summary["steps"]] == [
        ("prepare", "succeeded", "failed"),
        ("work", "failed", "done"),
        ("finish", "pending", None),
    ]
    assert summary["steps"][2]["node"] is None


def test_params_from_file_and_flags_are_merged_and_validated(small_action, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("count: 2\nfail: work\n")
    proc = cli("run", small_action, "--json", "--params", str(params), "--param", "fail=none")
    assert proc.returncode == 0, proc.stderr
    assert json_events(proc)[0]["params"] == {"count": 2, "fail": "none", "broken_rollback": False}

    bad = cli("run", small_action, "--param", "count=0", "--param", "fail=maybe")
    assert bad.returncode == 2
    assert "params.count: Input should be greater than or equal to 1 (got '0')" in bad.stderr
    assert "params.fail: Input should be 'none' or 'work' (got 'maybe')" in bad.stderr
    assert bad.stdout == ""  # nothing ran, no live view

    as_json = cli("run", small_action, "--json", "--param", "count=zero")
    assert as_json.returncode == 2
    [end] = json_events(as_json)
    assert end["event"] == "end" and end["exit_code"] == 2 and "params.count" in end["error"]


def test_bad_targets_exit_2_with_what_to_write(tmp_path):
    missing = cli("run", f"{tmp_path / 'nope.py'}:Action")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    not_action = cli("run", f"{ROOT / 'examples' / 'train' / 'action.py'}:TrainParams")
    assert not_action.returncode == 2 and "not an action: TARGET must name a BaseAction subclass" in not_action.stderr
    no_colon = cli("run", "examples/train/action.py")
    assert no_colon.returncode == 2 and "must be 'package.module:ClassName'" in no_colon.stderr


@pytest.mark.skipif(not _installed(), reason="synapse-steps is not pip-installed here (CI installs it)")
def test_console_script_is_installed():
    script = Path(sys.executable).with_name("synapse-steps")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "validate" in proc.stdout and "Exit status" in proc.stdout


# --- validate ---------------------------------------------------------------------------


def test_validate_accepts_a_good_action_and_config_without_running():
    proc = cli("validate", "examples.train.action:DigitsTrainAction", "--config", TRAIN_RAY_CONFIG, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["valid"] is True and report["executor"] == "ray"
    assert [s["name"] for s in report["steps"]] == ["load", "train", "evaluate", "save"]
    assert report["steps"][1]["num_gpus"] == 0  # ray.yaml's override of the step's own num_gpus=1


def test_validate_reports_every_problem_naming_the_field(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("executor: spark\n")
    proc = cli("validate", TRAIN, "--config", str(config), "--param", "epochs=0")
    assert proc.returncode == 2
    assert "executor: Input should be 'local' or 'ray'" in proc.stdout
    assert "params.epochs: Input should be greater than or equal to 1 (got '0')" in proc.stdout
    assert "invalid: 2 problems" in proc.stdout


def test_validate_rejects_an_override_for_an_unknown_step(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("executor: ray\nsteps:\n  trian: {num_gpus: 0}\n")
    proc = cli("validate", TRAIN, "--config", str(config), "--json")
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    assert report["valid"] is False
    [problem] = report["problems"]
    assert problem["area"] == "config" and "['trian']" in problem["message"] and "'train'" in problem["message"]


def test_validate_names_a_bad_upload_source(tmp_path):
    upload = f"{ROOT / 'examples' / 'upload' / 'action.py'}:DirectoryUploadAction"
    proc = cli("validate", upload, "--param", f"source={tmp_path / 'missing'}", "--param", "destination=out")
    assert proc.returncode == 2
    assert "params.source: Value error" in proc.stdout and "is not a directory" in proc.stdout


# --- the train example through the CLI, on both executors --------------------------------


def _check_train_run(proc: subprocess.CompletedProcess, output_dir: Path, executor: str) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = json_events(proc)
    start, end = events[0], events[-1]
    assert start["event"] == "start" and start["executor"] == executor
    assert [e["progress"] for e in events if e["event"] == "progress"][-1] == 1.0
    assert end["event"] == "end" and end["success"] is True
    assert end["summary"]["metrics"]["evaluate"]["test_accuracy"] > 0.85
    assert (output_dir / f"digits-{start['job_id']}.pkl").is_file()
    return end["summary"]


@pytest.mark.slow
def test_train_example_runs_in_process(tmp_path):
    out = tmp_path / "artifacts"
    proc = cli(
        "run",
        TRAIN,
        "--config",
        TRAIN_RAY_CONFIG,
        "--executor",
        "local",
        "--json",
        "--param",
        f"output_dir={out}",
        "--param",
        "epochs=10",
        cwd=tmp_path,
    )
    summary = _check_train_run(proc, out, "local")
    assert {s["node"] for s in summary["steps"]} == {"local"}


@pytest.mark.slow
@pytest.mark.ray
def test_train_example_runs_on_ray(tmp_path):
    out = tmp_path / "artifacts"
    proc = cli(
        "run",
        TRAIN,
        "--config",
        TRAIN_RAY_CONFIG,
        "--executor",
        "ray",
        "--json",
        "--param",
        f"output_dir={out}",
        "--param",
        "epochs=10",
        env={"SYNAPSE_STEPS_RAY__NUM_CPUS": "2"},
        cwd=tmp_path,
    )
    summary = _check_train_run(proc, out, "ray")
    nodes = {s["node"] for s in summary["steps"]}
    assert len(nodes) == 1 and len(nodes.pop()) == 56  # every step ran as a task on the one local node


# --- params typed by the model, help from the model ---------------------------------------

TYPED_SOURCE = textwrap.dedent(
    """
    from pydantic import BaseModel, Field

    from synapse_steps import BaseStep, BaseTrainAction, StepResult


    class Params(BaseModel):
        name: str = Field("run", description="A label kept exactly as typed.")
        version: str = Field("1.0", description="Release string, not a number.")
        id: str = Field("000", description="Zero-padded identifier.")
        retries: int = Field(1, ge=0, description="How often to retry.")
        tags: list[str] = Field(default_factory=list, description="Labels, as a JSON list.")


    class Echo(BaseStep):
        name = "echo"
        progress_weight = 1

        def execute(self, ctx):
            ctx.log("seen", {k: [v, type(v).__name__] for k, v in ctx.params.items()})
            return StepResult()


    class TypedAction(BaseTrainAction[Params]):
        def setup_steps(self, registry):
            registry.register(Echo())
    """
)


@pytest.fixture
def typed_action(tmp_path: Path) -> str:
    path = tmp_path / "typed_action.py"
    path.write_text(TYPED_SOURCE)
    return f"{path}:TypedAction"


def _seen(proc: subprocess.CompletedProcess) -> dict[str, list[Any]]:
    assert proc.returncode == 0, proc.stderr
    [log] = [e for e in json_events(proc) if e["event"] == "log" and e["name"] == "seen"]
    return log["data"]


def test_strings_stay_strings_and_numbers_are_parsed_by_the_model(typed_action):
    proc = cli(
        "run", typed_action, "--json", "--param", "name=yes", "--param", "version=1.10", "--id", "007",
        "--param", "retries=007", "--tags", '["a", "b"]',
    )  # fmt: skip
    assert _seen(proc) == {
        "name": ["yes", "str"],
        "version": ["1.10", "str"],
        "id": ["007", "str"],
        "retries": [7, "int"],
        "tags": [["a", "b"], "list"],
    }


def test_a_params_file_and_model_options_layer_in_order(typed_action, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("name: from-file\nretries: 3\n")
    proc = cli("run", typed_action, "--json", "--params", str(params), "--param", "retries=4", "--retries", "5")
    seen = _seen(proc)
    assert seen["name"] == ["from-file", "str"] and seen["retries"] == [5, "int"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "nmae=x"], "unknown param 'nmae' in --param: did you mean 'name'? the params are name, version"),
        (["--param", "retires=2"], "unknown param 'retires' in --param: did you mean 'retries'?"),
        (["--param", "zzz=1"], "unknown param 'zzz' in --param: the params are name, version, id, retries, tags"),
    ],
)
def test_an_unknown_param_exits_2_naming_it_and_the_closest_one(typed_action, args, message):
    proc = cli("run", typed_action, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""  # nothing ran


def test_an_unknown_key_in_a_params_file_is_an_error_too(typed_action, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("retrys: 3\n")
    proc = cli("run", typed_action, "--params", str(params))
    assert proc.returncode == 2
    assert f"unknown param 'retrys' in params file {params}: did you mean 'retries'?" in proc.stderr


def test_an_unknown_option_is_a_usage_error_with_a_suggestion(typed_action):
    proc = cli("run", typed_action, "--retires", "2")
    assert proc.returncode == 2
    assert "No such option '--retires'" in proc.stderr and "'--retries'" in proc.stderr


def test_a_list_param_that_is_not_json_names_the_param(typed_action):
    proc = cli("run", typed_action, "--param", "tags=a,b")
    assert proc.returncode == 2
    assert "param 'tags' takes JSON (JSON)" in proc.stderr


@pytest.mark.parametrize("command", ["run", "validate"])
def test_target_help_lists_every_param_with_type_default_and_description(typed_action, command):
    proc = cli(command, typed_action, "--help")
    assert proc.returncode == 0, proc.stderr
    params = proc.stdout.split("Action params of TypedAction", 1)[1]
    lines = [" ".join(line.split()) for line in params.splitlines()]
    for expected in (
        "--name TEXT A label kept exactly as typed. [default: run]",
        "--version TEXT Release string, not a number. [default: 1.0]",
        "--id TEXT Zero-padded identifier. [default: 000]",
        "--retries INTEGER How often to retry. [default: 1]",
        "--tags JSON Labels, as a JSON list. [default: []]",
    ):
        assert expected in lines, proc.stdout


def test_train_help_lists_the_example_params():
    proc = cli("run", TRAIN, "--help")
    assert proc.returncode == 0, proc.stderr
    for name in ("--epochs INTEGER", "--test-size FLOAT", "--seed INTEGER", "--output-dir TEXT", "--min-accuracy"):
        assert name in proc.stdout
    assert "Passes over the training set." in proc.stdout


def test_version_and_completion():
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == "synapse-steps 0.1.0"
    script = cli("completion", "bash")
    assert script.returncode == 0 and "_SYNAPSE_STEPS_COMPLETE=bash_complete" in script.stdout
    env = {"_SYNAPSE_STEPS_COMPLETE": "bash_complete", "COMP_WORDS": "synapse-steps va", "COMP_CWORD": "1"}
    completed = cli(env=env)
    assert completed.stdout.split() == ["plain,validate"]


# --- output outside a terminal, and --json ---------------------------------------------------


def test_plain_output_has_a_timestamped_line_per_step_event(small_action):
    proc = cli("run", small_action, "--param", "fail=work", "--param", "broken_rollback=true")
    assert proc.returncode == 1
    lines = [line for line in proc.stdout.splitlines() if re.match(STAMP + " ", line)]
    events = [re.sub(r"[0-9.]+ s\b", "T s", line.split(" ", 1)[1]) for line in lines]
    assert events[0].startswith("SmallAction on local — 3 steps, run ")
    assert events[1:] == [
        "step 1 of 3: prepare started",
        "[prepare] prepared count=4",
        "[prepare] preparing done",
        "step 1 of 3: prepare succeeded in T s",
        "step 2 of 3: work started",
        "step 2 of 3: work failed in T s: work exploded",
        "rollback of work: done",
        "rollback of prepare: failed",
        "run failed at 80% after T s",  # prepare (1) and work (3) of 5: the bar stops where work failed
    ]


def test_plain_progress_lines_follow_the_10_percent_rule(upload_args):
    proc = cli("run", *upload_args, "--param", "delay_s=0.05", "--progress-every", "0")
    assert proc.returncode == 0, proc.stderr
    percents = [int(m) for m in re.findall(rf"^{STAMP} progress (\d+)% \(step 2 of 3: upload", proc.stdout, re.M)]
    assert len(percents) >= 3
    assert all(b - a >= 10 for a, b in zip([0, *percents], percents, strict=False))
    quiet = cli("run", *upload_args)  # default: at most every 30 s, so none in a short run
    assert quiet.returncode == 0 and " progress " not in quiet.stdout


@pytest.fixture
def upload_args(tmp_path: Path) -> list[str]:
    return [
        f"{ROOT / 'examples' / 'upload' / 'action.py'}:DirectoryUploadAction",
        "--destination",
        str(tmp_path / "up"),
    ]


def test_json_events_carry_timestamp_run_id_and_step(small_action):
    from datetime import datetime, timedelta, timezone

    proc = cli("run", small_action, "--json")
    events = json_events(proc)
    run_id = events[0]["job_id"]
    now = datetime.now(timezone.utc)
    for event in events:
        assert event["run_id"] == run_id and "step" in event, event
        stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        assert stamp.tzinfo is not None and abs(now - stamp) < timedelta(minutes=2)
    assert {e["step"] for e in events if e["event"] in ("step", "metrics", "log", "message")} == {
        "prepare",
        "work",
        "finish",
    }
    running = [(e["step"], e["order"], e["of"]) for e in events if e["event"] == "step" and e["status"] == "running"]
    assert running == [("prepare", 1, 3), ("work", 2, 3), ("finish", 3, 3)]


def test_train_run_prints_the_model_path(tmp_path):
    out = tmp_path / "artifacts"
    proc = cli("run", TRAIN, "--executor", "local", "--output-dir", str(out), "--epochs", "2", "--min-accuracy", "0")
    assert proc.returncode == 0, proc.stderr
    [model] = out.glob("digits-*.pkl")
    assert f"result [save] path={model}" in proc.stdout


# --- Ctrl-C --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.ray
def test_ctrl_c_while_ray_starts_exits_130_within_2_s(tmp_path):
    """A real SIGINT while ``ray.init`` starts a local Ray (no address): exit 130 within 2 s."""
    import signal
    import time

    environment = {k: v for k, v in os.environ.items() if not k.startswith("SYNAPSE_STEPS_")}
    environment.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "synapse_steps.cli", "run", TRAIN, "--executor", "ray", "--output-dir", str(tmp_path)],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        header = proc.stdout.readline()  # printed just before the executor starts Ray
        assert "DigitsTrainAction on ray" in header, proc.stderr.read() if proc.poll() is not None else header
        time.sleep(1.0)  # ray.init takes 2-4 s here: the signal lands in the middle of it
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert elapsed < 2.0, f"exited {elapsed:.2f} s after SIGINT"
    assert "Traceback" not in err
    assert not list(tmp_path.glob("digits-*.pkl"))
