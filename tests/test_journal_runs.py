"""Runs that outlive their driver: SIGKILL the driver mid-step, then `resume` or `rollback` it.

Real `synapse-steps` subprocesses, killed with a real SIGKILL in the middle of step 2 of 3
(after its `ctx.commit()`), on SQLite and a real Postgres, in-process and on a Ray head
started with `ray start` (so the cluster outlives the driver). What the steps did is read
from their side-effect log (`tests/drivers/journaled_action.py`), what was journaled from
the journal itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from synapse_steps import (
    BaseStep,
    BaseStepContext,
    JournalError,
    Orchestrator,
    RuntimeContext,
    StepRegistry,
    StepResult,
)
from synapse_steps.journal import Journal, RollbackStatus, RunStatus, StepStatus
from tests.journal_fixtures import DATABASES, empty_journal, postgres_server  # noqa: F401  (a fixture)
from tests.ray_head import ROOT, _env

pytestmark = pytest.mark.timeout(300)

ACTION = "tests/drivers/journaled_action.py:ThreeSteps"


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synapse_steps.cli", *args],
        cwd=ROOT, env=env or _env(), capture_output=True, text=True, timeout=timeout, check=False,
    )


def crash_in_two(url: str, out: Path, run_id: str, *extra: str) -> None:
    """Run the action with a driver that is SIGKILLed inside step 2 of 3, after its commit."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "crash-in-two").touch()
    driver = subprocess.Popen(
        [sys.executable, "-m", "synapse_steps.cli", "run", ACTION, "--out", str(out), "--journal", url,
         "--run-id", run_id, "--json", *extra],
        cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "ready-two").exists():
        assert driver.poll() is None, f"the driver ended before step two: {driver.stderr.read() if driver.stderr else ''}"
        assert time.monotonic() < deadline, "step two never started"
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    (out / "crash-in-two").unlink()


def log(out: Path) -> list[str]:
    return (out / "log").read_text().splitlines()


def statuses(url: str) -> dict[str, str]:
    proc = cli("runs", "list", "--json", "--journal", url)
    assert proc.returncode == 0, proc.stderr
    return {row["run_id"]: row["status"] for row in map(json.loads, proc.stdout.splitlines())}


def final_state(url: str, run_id: str) -> tuple[list[str], list[dict[str, str]]]:
    with Journal.open(url) as journal:
        state = journal.load_context(run_id)
    assert state is not None
    return state["done"], [result.data for result in state["step_results"]]  # type: ignore[union-attr, index]


def check_resume_and_rollback(url: str, tmp_path: Path, *extra: str) -> None:
    """The scenario of the issue: kill, list, resume one crashed run, roll back another."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    crash_in_two(url, a, "run-a", *extra)
    crash_in_two(url, b, "run-b", *extra)
    assert {k: v for k, v in statuses(url).items() if k in ("run-a", "run-b")} == {
        "run-a": "interrupted", "run-b": "interrupted",
    }

    resumed = cli("resume", "run-a", "--journal", url, "--json")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    end = json.loads(resumed.stdout.splitlines()[-1])
    assert end["event"] == "end" and end["run_id"] == "run-a" and end["exit_code"] == 0
    assert log(a) == ["run one run-a/one", "run two run-a/two", "run two run-a/two", "run three run-a/three"]
    c.mkdir()
    clean = cli("run", ACTION, "--out", str(c), "--journal", url, "--run-id", "run-c", *extra)
    assert clean.returncode == 0, clean.stderr
    assert final_state(url, "run-a") == final_state(url, "run-c") == (
        ["one", "two", "three"], [{"step": "one"}, {"step": "two"}, {"step": "three"}],
    )

    rolled = cli("rollback", "run-b", "--journal", url)
    assert rolled.returncode == 0, rolled.stderr + rolled.stdout
    assert "✓ rolled back (last first): two, one" in rolled.stdout
    assert log(b) == [
        "run one run-b/one",
        "run two run-b/two",
        "undo two ['one', 'two'] {}",  # what two had committed; no result: the driver died inside it
        "undo one ['one'] {'undo': 'one'}",  # the state one committed, and its rollback_data
    ]
    assert statuses(url)["run-a"] == "succeeded" and statuses(url)["run-b"] == "rolled_back"
    with Journal.open(url) as journal:
        detail = journal.get_run("run-b")
    assert [(r.step, r.status) for r in detail.rollbacks] == [("two", RollbackStatus.DONE), ("one", RollbackStatus.DONE)]
    assert [(x.step, x.attempt, x.status) for x in detail.attempts] == [
        ("one", 1, StepStatus.SUCCEEDED), ("two", 1, StepStatus.STARTED),
    ]

    again = cli("rollback", "run-b", "--journal", url)
    assert (again.returncode, again.stderr.strip()) == (2, "error: run 'run-b' already finished (rolled_back)")
    assert len(log(b)) == 4, "nothing undone twice"
    twice = cli("resume", "run-a", "--journal", url)
    assert (twice.returncode, twice.stderr.strip()) == (2, "error: run 'run-a' already finished (succeeded)")


@pytest.mark.parametrize("database", DATABASES)
def test_a_killed_driver_is_resumed_or_rolled_back_in_process(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    check_resume_and_rollback(empty_journal(database, request, tmp_path), tmp_path)


@pytest.mark.slow
def test_a_killed_driver_is_resumed_or_rolled_back_on_ray(cluster: dict[str, str], tmp_path: Path) -> None:
    """The Ray head outlives the driver; the step's ctx.commit() inside a worker reached the journal."""
    url = f"sqlite:///{tmp_path}/runs.db"
    check_resume_and_rollback(url, tmp_path, "--executor", "ray", "--address", f"127.0.0.1:{cluster['gcs']}")
    with Journal.open(url) as journal:
        nodes = {a.node for a in journal.get_run("run-a").attempts if a.status is StepStatus.SUCCEEDED}
    assert len(nodes) == 1 and None not in nodes and "local" not in nodes, nodes  # Ray node ids


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_of_two_concurrent_resumes_exactly_one_wins(database: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    journal_url = empty_journal(database, request, tmp_path)
    out = tmp_path / "a"
    crash_in_two(journal_url, out, "run-a")
    (out / "slow-in-three").touch()  # the winner is still running when the loser asks
    resumes = [
        subprocess.Popen(
            [sys.executable, "-m", "synapse_steps.cli", "resume", "run-a", "--journal", journal_url],
            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    results = sorted((p.wait(timeout=120), p.stderr.read().strip() if p.stderr else "") for p in resumes)
    (won, _), (lost, why) = results
    assert (won, lost) == (0, 2), results
    assert why.startswith("error: run 'run-a' ") and (
        "was taken over first by" in why or "is still running" in why
    ), why
    assert [line.split()[1] for line in log(out)] == ["one", "two", "two", "three"], "one resume ran the rest, once"


@pytest.mark.slow
def test_resume_and_rollback_refuse_what_they_cannot_do(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    unknown = cli("resume", "nope", "--journal", url)
    assert (unknown.returncode, unknown.stderr.strip()) == (2, "error: no run 'nope' in the journal")
    bad_url = cli("rollback", "x", "--journal", "mysql://db/x")
    assert bad_url.returncode == 2 and bad_url.stderr.startswith("error: journal URL 'mysql://db/x': unsupported database")
    assert len(bad_url.stderr.strip().splitlines()) == 1

    out = tmp_path / "a"
    crash_in_two(url, out, "run-a")
    changed = cli("resume", "run-a", "--journal", url, env=_env({"SS_EXTRA_STEP": "1"}))
    assert changed.returncode == 2
    assert changed.stderr.startswith("error: run 'run-a': its steps changed since it started (journaled: one ")
    assert changed.stderr.strip().endswith("pass --force (force=True) to go on anyway")
    assert statuses(url)["run-a"] == "interrupted", "a refusal changes nothing"
    forced = cli("resume", "run-a", "--journal", url, "--force", env=_env({"SS_EXTRA_STEP": "1"}))
    assert forced.returncode == 0, forced.stderr
    assert [line.split()[1] for line in log(out)] == ["one", "two", "two", "three", "four"]


@pytest.mark.slow
def test_a_live_run_is_neither_resumed_nor_rolled_back(tmp_path: Path) -> None:
    url, out = f"sqlite:///{tmp_path}/runs.db", tmp_path / "a"
    out.mkdir()
    (out / "crash-in-two").touch()  # it waits inside step two: alive, not killed
    driver = subprocess.Popen(
        [sys.executable, "-m", "synapse_steps.cli", "run", ACTION, "--out", str(out), "--journal", url, "--run-id", "live"],
        cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "ready-two").exists():
            assert time.monotonic() < deadline and driver.poll() is None
            time.sleep(0.05)
        for command in ("resume", "rollback"):
            refused = cli(command, "live", "--journal", url)
            assert refused.returncode == 2
            assert refused.stderr.startswith(f"error: run 'live' is still running (owner {os.uname().nodename} pid {driver.pid})")
        assert statuses(url)["live"] == "running"
    finally:
        driver.kill()
        driver.wait(timeout=30)


# -- the Python API -----------------------------------------------------------------------


@dataclass
class Ctx(BaseStepContext):
    seen: list[str] = field(default_factory=list)


class Keyed(BaseStep[Ctx]):
    progress_weight = 1.0

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def execute(self, ctx: Ctx) -> StepResult:
        ctx.seen.append(ctx.idempotency_key)
        return StepResult()


def test_a_python_run_is_journaled_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry: StepRegistry[Ctx] = StepRegistry()
    registry.register(Keyed("only"))
    url = f"sqlite:///{tmp_path}/runs.db"
    Orchestrator(registry, Ctx(runtime_ctx=RuntimeContext(job_id="plain"))).execute()
    Orchestrator(registry, Ctx(runtime_ctx=RuntimeContext(job_id="asked")), journal=url).execute()
    monkeypatch.setenv("SYNAPSE_STEPS_JOURNAL", url)
    ctx = Ctx(runtime_ctx=RuntimeContext(job_id="by-env"))
    Orchestrator(registry, ctx).execute()
    assert ctx.seen == ["by-env/only"]
    with Journal.open(url) as journal:
        assert {r.run_id: r.status for r in journal.list_runs()} == {
            "asked": RunStatus.SUCCEEDED, "by-env": RunStatus.SUCCEEDED,
        }
        detail = journal.get_run("asked")
    assert detail.summary.target == "" and [a.status for a in detail.attempts] == [StepStatus.SUCCEEDED]
    with pytest.raises(RuntimeError, match="only while a step runs"):
        _ = ctx.idempotency_key


def test_a_python_run_resumed_with_other_steps_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    with Journal.open(url) as journal:
        run = journal.start_run(
            run_id="r", target="", params={}, registry=[], executor={}, heartbeat_interval_s=0.1
        )
        run.finish(RunStatus.ROLLBACK_INCOMPLETE, error="abandoned")
    registry: StepRegistry[Ctx] = StepRegistry()
    registry.register(Keyed("only"))
    with pytest.raises(JournalError, match=r"^run 'r': its steps changed since it started \(journaled: ; now: only "):
        Orchestrator(registry, Ctx(runtime_ctx=RuntimeContext()), journal=url).resume("r")
    result = Orchestrator(registry, Ctx(runtime_ctx=RuntimeContext()), journal=url).rollback_run("r", force=True)
    assert result["rolled_back"] == [] and result["run_id"] == "r"
    with Journal.open(url) as journal:
        assert journal.get_run("r").status is RunStatus.ROLLED_BACK


@pytest.mark.slow
def test_the_upload_example_resumes_where_its_driver_died(tmp_path: Path) -> None:
    """The in-flight upload step restores the files it had recorded: it rewrites them, and the run completes.

    The driver is killed while the step waits after its first file (recorded, then written).
    """
    url, destination = f"sqlite:///{tmp_path}/runs.db", tmp_path / "storage"
    driver = subprocess.Popen(
        [sys.executable, "-m", "synapse_steps.cli", "run", "examples/upload/action.py:DirectoryUploadAction",
         "--destination", str(destination), "--delay-s", "1", "--journal", url, "--run-id", "up-1", "--json"],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert driver.stdout is not None
    for line in driver.stdout:
        event = json.loads(line)
        if event.get("event") == "log" and event.get("name") == "uploaded":
            break
    else:
        raise AssertionError("the driver ended before its first upload")
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    assert statuses(url)["up-1"] == "interrupted"
    resumed = cli("resume", "up-1", "--journal", url, "--json")
    assert resumed.returncode == 0, resumed.stderr
    source = ROOT / "examples" / "upload" / "sample"
    expected = {p.relative_to(source).as_posix(): p.read_bytes() for p in source.rglob("*") if p.is_file()}
    assert {p.relative_to(destination).as_posix(): p.read_bytes() for p in destination.rglob("*") if p.is_file()} == expected
    end = json.loads(resumed.stdout.splitlines()[-1])
    upload = next(step for step in end["summary"]["steps"] if step["step"] == "upload")
    assert upload["data"] == {"uploaded": len(expected), "already_present": 0}, "every file is this run's own"


@pytest.mark.slow
def test_a_driver_killed_during_its_rollback_leaves_the_rest_to_rollback(tmp_path: Path) -> None:
    """Step three fails; the driver dies inside step two's rollback: `rollback` redoes two, then one, never three."""
    url, out = f"sqlite:///{tmp_path}/runs.db", tmp_path / "a"
    out.mkdir()
    (out / "fail-in-three").touch()
    (out / "hang-undo-two").touch()
    driver = subprocess.Popen(
        [sys.executable, "-m", "synapse_steps.cli", "run", ACTION, "--out", str(out), "--journal", url, "--run-id", "r"],
        cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (out / "ready-undo-two").exists():
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.02)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    (out / "hang-undo-two").unlink()
    with Journal.open(url) as journal:
        detail = journal.get_run("r")
    assert detail.status is RunStatus.INTERRUPTED
    assert [(r.step, r.status) for r in detail.rollbacks] == [("three", RollbackStatus.DONE), ("two", RollbackStatus.STARTED)]
    assert detail.pending_rollbacks() == ["two", "one"]

    rolled = cli("rollback", "r", "--journal", url)
    assert rolled.returncode == 0, rolled.stderr + rolled.stdout
    assert [line for line in log(out) if line.startswith("undo")] == [
        "undo three ['one', 'two', 'three'] {}",  # before the crash, recorded done: not run again
        "undo two ['one', 'two'] {'undo': 'two'}",
        "undo one ['one'] {'undo': 'one'}",
    ]
    assert statuses(url)["r"] == "rolled_back"


@dataclass
class BigCtx(BaseStepContext):
    payload: bytes = b""


class Fill(BaseStep[BigCtx]):
    name = "fill"
    progress_weight = 1.0

    def execute(self, ctx: BigCtx) -> StepResult:
        ctx.payload = bytes(range(256)) * 8192  # 2 MiB: a blob, not a row
        return StepResult()


def test_large_context_values_go_to_the_blob_location_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNAPSE_STEPS_JOURNAL_BLOBS", str(tmp_path / "shared-blobs"))
    registry: StepRegistry[BigCtx] = StepRegistry()
    registry.register(Fill())
    url = f"sqlite:///{tmp_path}/runs.db"
    Orchestrator(registry, BigCtx(runtime_ctx=RuntimeContext(job_id="big")), journal=url).execute()
    assert len([p for p in (tmp_path / "shared-blobs").rglob("*") if p.is_file()]) == 1
    assert not (tmp_path / "runs.db.blobs").exists()
    with Journal.open(url) as journal:
        state = journal.load_context("big")
        (commit,) = journal.get_run("big").commits
    assert state is not None and state["payload"] == bytes(range(256)) * 8192 and len(commit.blobs) == 1
