"""Rollback you can trust, tested where faults strike: real signals to a real driver process.

Each test starts ``drivers/rollback_driver.py`` in its own process group, waits for the
marker that says the run reached the moment under test (mid-step, inside a hook,
during a rollback), sends real signals, and then checks what the rollback saw, that
it ran after the step stopped, and what the records and the error say — on both
executors where the moment exists on both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from synapse_steps.journal import Journal, RollbackStatus, RunStatus

DRIVER = Path(__file__).parent / "drivers" / "rollback_driver.py"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


class Driver:
    """One driver process running one scenario."""

    def __init__(self, tmp_path: Path, executor: str, scenario: str, env: dict[str, str] | None = None) -> None:
        self.markers = tmp_path / "markers"
        self.markers.mkdir()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        env.pop("RAY_ADDRESS", None)
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), str(self.markers), executor, scenario],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self.output = ""

    def wait_for(self, marker: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while not (self.markers / marker).exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"driver ended before {marker}: {self.proc.communicate()[0][-3000:]}")
            assert time.monotonic() < deadline, f"{marker} never appeared"
            time.sleep(0.02)

    def signal(self, sig: signal.Signals) -> float:
        self.proc.send_signal(sig)
        return time.monotonic()

    def finish(self, timeout_s: float = 60) -> dict[str, Any]:
        try:
            self.output, _ = self.proc.communicate(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        lines = [line for line in self.output.splitlines() if line.startswith("OUTCOME ")]
        assert lines, self.output[-4000:]
        return json.loads(lines[-1][len("OUTCOME "):])

    def read(self, marker: str) -> str:
        return (self.markers / marker).read_text()

    def at(self, marker: str) -> float:
        """The wall-clock time a marker was written at (markers hold 'pid time')."""
        return float(self.read(marker).split()[1])

    def units_left(self) -> list[str]:
        return sorted(p.name for p in self.markers.glob("unit-work-*"))


@pytest.mark.parametrize("executor", ["local", "ray"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_mid_step_rolls_back_what_the_step_did(tmp_path: Path, executor: str, sig: signal.Signals) -> None:
    driver = Driver(tmp_path, executor, "in-step")
    driver.wait_for("unit-work-6")
    driver.signal(sig)
    out = driver.finish()

    assert out["raised"] == "KeyboardInterrupt" and out["message"] == f"received signal {sig.name}", out
    saw = json.loads(driver.read("rollback-saw-work"))
    # Every unit the step did (it marks a unit right after recording it) was seen by its rollback.
    assert len(saw) >= 6 and saw == list(range(1, len(saw) + 1)), saw
    assert driver.units_left() == [], "the rollback must undo every unit the step did"
    assert out["records"] == [["first", "succeeded", "done"], ["work", "failed", "done"], ["never", "pending", None]]
    assert out["errors"][-1] == f"interrupted while the step was running (received signal {sig.name})"
    assert out["done"] == saw, "the caller's context holds the same latest state"
    assert not (driver.markers / "executed-never").exists()


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_interrupt_inside_a_hook_between_steps_rolls_back_the_executed_steps(tmp_path: Path, executor: str) -> None:
    driver = Driver(tmp_path, executor, "in-hook")
    driver.wait_for("in-hook")
    driver.signal(signal.SIGINT)
    out = driver.finish()

    assert out["raised"] == "KeyboardInterrupt", out
    assert (driver.markers / "rollback-end-first").exists()
    assert not (driver.markers / "started-work").exists()
    assert out["records"] == [["first", "succeeded", "done"], ["work", "failed", "not needed"], ["never", "pending", None]]
    assert out["errors"][-1] == "interrupted before the step started (received signal SIGINT)"


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_signals_during_rollback_do_not_cut_it_short(tmp_path: Path, executor: str) -> None:
    """A step fails; SIGTERM then SIGINT arrive while the rollbacks run: both still finish."""
    driver = Driver(tmp_path, executor, "in-rollback")
    driver.wait_for("rollback-start-first")
    driver.signal(signal.SIGTERM)
    time.sleep(0.2)
    driver.signal(signal.SIGINT)
    out = driver.finish()

    assert out["raised"] == "StepFailedError" and out["message"] == "Step 'work' failed: work broke after 3 units", out
    assert (driver.markers / "rollback-end-first").exists(), "the rollback was cut short"
    assert json.loads(driver.read("rollback-saw-work")) == [1, 2, 3]
    assert out["records"] == [["first", "succeeded", "done"], ["work", "failed", "done"], ["never", "pending", None]]


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_third_signal_abandons_the_rollback_and_says_what_was_not_undone(tmp_path: Path, executor: str) -> None:
    journal = f"sqlite:///{tmp_path}/runs.db"  # journaled (by env): the journal must say the same
    driver = Driver(tmp_path, executor, "hang-rollback", {"SYNAPSE_STEPS_JOURNAL": journal})
    driver.wait_for("rollback-start-first")
    for sig in (signal.SIGINT, signal.SIGINT, signal.SIGINT):
        driver.signal(sig)
        time.sleep(0.3)
    out = driver.finish()

    assert driver.proc.returncode == 3, driver.output[-3000:]
    assert out["raised"] == "RollbackIncompleteError", out
    assert out["abandoned"] == "first" and out["not_run"] == []
    assert out["message"].startswith("rollback incomplete: abandoned by a third signal after a step failure")
    assert out["message"].endswith("not undone: first")
    assert out["records"] == [["first", "succeeded", "failed"], ["work", "failed", "done"], ["never", "pending", None]]
    with Journal.open(journal) as runs:
        (run,) = runs.list_runs()
        detail = runs.get_run(run.run_id)
    assert run.status is RunStatus.ROLLBACK_INCOMPLETE and run.error == out["message"]
    assert [(r.step, r.status) for r in detail.rollbacks] == [("work", RollbackStatus.DONE), ("first", RollbackStatus.NOT_RUN)]
    assert detail.pending_rollbacks() == ["first"], "`synapse-steps rollback RUN_ID` would undo it"


@pytest.mark.parametrize("executor", ["ray"])
def test_second_signal_during_the_cancel_grace_still_kills_the_step_before_its_rollback(
    tmp_path: Path, executor: str
) -> None:
    """The step swallows the polite cancel; a second Ctrl-C must not skip the force-kill."""
    driver = Driver(tmp_path, executor, "stubborn")
    driver.wait_for("unit-work-4")
    driver.signal(signal.SIGINT)
    driver.wait_for("swallowed")
    driver.signal(signal.SIGINT)
    out = driver.finish()

    assert out["raised"] == "KeyboardInterrupt", out
    step_pid = int(driver.read("started-work").split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(step_pid, 0)
    saw = json.loads(driver.read("rollback-saw-work"))
    left = [int(name.rsplit("-", 1)[1]) for name in driver.units_left()]
    # Killed by force, the step's rollback sees the last state that reached the actor: at most
    # one shipping interval old, so only the last unit or two (done during the grace) can be missing.
    assert len(saw) >= 4 and all(unit > max(saw) for unit in left) and len(left) <= 3, (saw, left)
    rollback_started = driver.at("rollback-start-work")
    assert all((driver.markers / f"unit-work-{unit}").stat().st_mtime < rollback_started for unit in left)
    assert rollback_started > driver.at("swallowed")
    assert out["records"][1] == ["work", "failed", "done"]
