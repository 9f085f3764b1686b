"""The journal's records, on SQLite and on a real Postgres: what a driver writes is what history reads."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from synapse_steps.errors import ContextNotSerializableError
from synapse_steps.journal import (
    ErrorInfo,
    Journal,
    JournalError,
    RollbackStatus,
    RunJournal,
    RunStatus,
    StepEntry,
    StepStatus,
    entries_of,
    fingerprint,
)
from tests.journal_fixtures import journal_url, postgres_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(120)

STEPS = [StepEntry("load", "pkg.steps:Load", 0.2), StepEntry("train", "pkg.steps:Train", 0.6), StepEntry("save", "pkg.steps:Save", 0.2)]
MIB = 1 << 20


@pytest.fixture
def journal(journal_url: str, tmp_path: Path) -> Iterator[Journal]:  # noqa: F811
    j = Journal.open(journal_url, blobs=str(tmp_path / "blobs"))
    yield j
    j.close()


def start(journal: Journal, **kw: object) -> RunJournal:
    args: dict[str, object] = {"target": "pkg.actions:Train", "params": {"epochs": 3}, "registry": STEPS, "executor": {"kind": "local"}}
    args.update(kw)
    return journal.start_run(**args)  # type: ignore[arg-type]


def boom() -> ErrorInfo:
    try:
        raise ValueError("disk full")
    except ValueError as exc:
        return ErrorInfo.of(exc)


def test_a_run_reads_back_as_written(journal: Journal) -> None:
    run = start(journal)
    a1 = run.step_started("load", 0, node="node-a")
    run.commit_context({"rows": 100}, step="load")
    run.step_finished("load", a1, StepStatus.SUCCEEDED, result={"rows": 100, "model": object()})
    a2 = run.step_started("train", 1, node="node-b")
    run.step_finished("train", a2, StepStatus.FAILED, error=boom())
    run.rollback_started("train", node="node-b")
    run.rollback_finished("train", RollbackStatus.DONE)
    run.rollback_started("load", node="node-a")
    run.rollback_finished("load", RollbackStatus.FAILED, error=boom())
    run.rollback_finished("save", RollbackStatus.NOT_NEEDED)
    run.finish(RunStatus.FAILED, error="Step 'train' failed: disk full")

    got = journal.get_run(run.run_id)
    assert got.status is RunStatus.FAILED and got.summary.error == "Step 'train' failed: disk full"
    assert got.params == {"epochs": 3} and got.executor == {"kind": "local"}
    assert got.registry == tuple(STEPS) and got.fingerprint == fingerprint(STEPS)
    assert [(a.step, a.order, a.attempt, a.status, a.node) for a in got.attempts] == [
        ("load", 0, 1, StepStatus.SUCCEEDED, "node-a"),
        ("train", 1, 1, StepStatus.FAILED, "node-b"),
    ]
    load, train = got.attempts
    assert load.result is not None and load.result["rows"] == 100 and load.result["model"].startswith("<object object")
    assert load.context_seq == 1 and train.context_seq is None
    assert train.error is not None and (train.error.type, train.error.message) == ("ValueError", "disk full")
    assert train.error.traceback is not None and 'raise ValueError("disk full")' in train.error.traceback
    assert all(a.duration_s is not None and a.duration_s >= 0 for a in got.attempts)
    assert [(r.step, r.status, r.node) for r in got.rollbacks] == [
        ("train", RollbackStatus.DONE, "node-b"),
        ("load", RollbackStatus.FAILED, "node-a"),
        ("save", RollbackStatus.NOT_NEEDED, None),
    ]
    assert got.rollbacks[1].error is not None and got.rollbacks[1].error.message == "disk full"
    assert got.rollbacks[0].duration_s is not None and got.rollbacks[2].duration_s is None
    assert got.pending_rollbacks() == []
    assert got.summary.duration_s is not None and got.summary.duration_s >= 0


def test_started_is_visible_to_another_connection_before_the_outcome(journal: Journal, journal_url: str) -> None:  # noqa: F811
    run = start(journal)
    run.step_started("load", 0)
    with Journal.open(journal_url, blobs=journal.blobs) as other:
        (attempt,) = other.get_run(run.run_id).attempts
        assert (attempt.status, attempt.finished_at) == (StepStatus.STARTED, None)
        assert other.list_runs()[0].status is RunStatus.RUNNING  # this process owns it and is alive


def test_context_round_trips_and_large_values_are_content_addressed(journal: Journal) -> None:
    run = start(journal)
    big = bytes(range(256)) * (4 * 1024)  # exactly 1 MiB: the threshold
    assert len(big) == MIB
    assert run.commit_context({"rows": 100, "weights": big}, step="load") == 1
    assert run.commit_context({"rows": 200, "weights": big}) == 2
    got = journal.get_run(run.run_id)
    assert [(c.seq, c.step, c.fields) for c in got.commits] == [(1, "load", ("rows", "weights")), (2, None, ("rows", "weights"))]
    (digest,) = got.commits[0].blobs
    assert got.commits[1].blobs == (digest,)
    blob_files = [p for p in Path(journal.blobs).rglob("*") if p.is_file()]
    assert [p.name for p in blob_files] == [digest]  # stored once, named by its sha256
    assert hashlib.sha256(blob_files[0].read_bytes()).hexdigest() == digest
    assert journal.load_context(run.run_id) == {"rows": 200, "weights": big}
    assert journal.load_context(run.run_id, seq=1) == {"rows": 100, "weights": big}


def test_a_run_without_commits_has_no_context(journal: Journal) -> None:
    run = start(journal)
    assert journal.load_context(run.run_id) is None
    with pytest.raises(JournalError, match=r"^no run 'nope' in the journal$"):
        journal.load_context("nope")


def test_an_unpicklable_field_is_named_and_nothing_is_committed(journal: Journal) -> None:
    run = start(journal)
    with pytest.raises(ContextNotSerializableError, match=r"^context field 'lock' cannot be journaled: TypeError: "):
        run.commit_context({"rows": 1, "lock": __import__("threading").Lock()})
    assert journal.get_run(run.run_id).commits == ()


def test_each_rollback_outcome_is_recorded_once(journal: Journal) -> None:
    run = start(journal)
    for order, step in enumerate(["load", "train", "save"]):
        run.step_started(step, order)
    run.rollback_finished("save", RollbackStatus.NOT_RUN)
    run.rollback_started("train")
    got = journal.get_run(run.run_id)
    assert got.pending_rollbacks() == ["save", "train", "load"]  # not run, started (crash), none

    run.rollback_finished("train", RollbackStatus.DONE)
    with pytest.raises(JournalError, match=rf"^the rollback of step 'train' in run '{run.run_id}' is already recorded as 'done'$"):
        run.rollback_started("train")
    with pytest.raises(JournalError, match=r"already recorded as 'done'$"):
        run.rollback_finished("train", RollbackStatus.FAILED)
    run.rollback_started("save")  # 'not run' may still run
    run.rollback_finished("save", RollbackStatus.DONE)
    got = journal.get_run(run.run_id)
    assert [(r.step, r.status) for r in got.rollbacks] == [("save", RollbackStatus.DONE), ("train", RollbackStatus.DONE)]
    assert got.pending_rollbacks() == ["load"]


def test_skipped_steps_are_never_pending_rollback(journal: Journal) -> None:
    run = start(journal)
    a = run.step_started("load", 0)
    run.step_finished("load", a, StepStatus.SKIPPED)
    b = run.step_started("train", 1)
    run.step_finished("train", b, StepStatus.SUCCEEDED)
    got = journal.get_run(run.run_id)
    assert got.succeeded_steps() == ["load", "train"]
    assert got.pending_rollbacks() == ["train"]


@pytest.mark.slow
def test_progress_is_throttled_and_the_last_value_is_kept(journal: Journal) -> None:
    run = start(journal)
    a = run.step_started("load", 0)
    written = [run.progress(i / 100, "load") for i in range(1, 51)]
    assert written[0] is True and not any(written[1:])
    assert journal.get_run(run.run_id).progress.overall == 0.01  # type: ignore[union-attr]
    run.step_finished("load", a, StepStatus.SUCCEEDED)  # within the second: still held back
    assert journal.get_run(run.run_id).progress.overall == 0.01  # type: ignore[union-attr]
    time.sleep(1.05)
    b = run.step_started("train", 1)
    run.step_finished("train", b, StepStatus.SUCCEEDED)  # a second later: flushes the held-back value
    progress = journal.get_run(run.run_id).progress
    assert progress is not None and (progress.overall, progress.step) == (0.5, "load")
    time.sleep(1.05)
    assert run.progress(0.6, "train") is True
    assert run.progress(0.7, "train") is False
    run.finish(RunStatus.SUCCEEDED)  # flushes it too
    progress = journal.get_run(run.run_id).progress
    assert progress is not None and (progress.overall, progress.step) == (0.7, "train")


def test_list_runs_newest_first_with_status_and_limit(journal: Journal) -> None:
    ids = []
    for status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SUCCEEDED, None):
        run = start(journal)
        ids.append(run.run_id)
        if status is not None:
            run.finish(status)
    assert [r.run_id for r in journal.list_runs()] == ids[::-1]
    assert [r.run_id for r in journal.list_runs(limit=2)] == ids[:1:-1]
    assert [r.run_id for r in journal.list_runs(status=RunStatus.SUCCEEDED)] == [ids[2], ids[0]]
    assert [r.run_id for r in journal.list_runs(status=RunStatus.RUNNING)] == [ids[3]]
    assert journal.list_runs(status=RunStatus.INTERRUPTED) == []


def test_writes_after_finish_or_take_over_are_refused(journal: Journal) -> None:
    run = start(journal)
    run.finish(RunStatus.SUCCEEDED)
    with pytest.raises(JournalError, match=rf"^run '{run.run_id}' is already finished in the journal; writing the heartbeat refused$"):
        run.heartbeat()

    old = start(journal)
    new = journal.take_over(old.run_id, allowed={RunStatus.RUNNING})
    assert (old.epoch, new.epoch) == (1, 2)
    with pytest.raises(JournalError, match=rf"^run '{old.run_id}' was taken over by \S+ pid \d+; this driver no longer owns it$"):
        old.step_started("load", 0)
    assert journal.get_run(old.run_id).attempts == ()
    new.step_started("load", 0)


def test_take_over_refuses_unknown_running_and_finished_runs(journal: Journal) -> None:
    with pytest.raises(JournalError, match=r"^no run 'r-404' in the journal$"):
        journal.take_over("r-404")
    live = start(journal)
    with pytest.raises(JournalError, match=rf"^run '{live.run_id}' is still running \(owner \S+ pid \d+\)$"):
        journal.take_over(live.run_id)
    live.finish(RunStatus.SUCCEEDED)
    with pytest.raises(JournalError, match=rf"^run '{live.run_id}' already finished \(succeeded\)$"):
        journal.take_over(live.run_id)
    assert journal.get_run(live.run_id).summary.owner_epoch == 1


def test_duplicate_run_id_is_refused(journal: Journal) -> None:
    start(journal, run_id="r1")
    with pytest.raises(JournalError, match=r"^run 'r1' already exists in the journal$"):
        start(journal, run_id="r1")


def test_prune_deletes_old_inactive_runs_and_their_orphan_blobs(journal: Journal) -> None:
    shared, own = b"s" * MIB, b"o" * MIB
    old = start(journal)
    old.commit_context({"shared": shared, "own": own})
    old.finish(RunStatus.SUCCEEDED)
    live = start(journal)
    live.commit_context({"shared": shared})
    blobs = {p.name for p in Path(journal.blobs).rglob("*") if p.is_file()}
    assert len(blobs) == 2

    assert journal.prune(older_than_s=3600) == []
    assert journal.prune(older_than_s=0) == [old.run_id]  # the live run stays
    with pytest.raises(JournalError, match=rf"^no run '{old.run_id}' in the journal$"):
        journal.get_run(old.run_id)
    left = {p.name for p in Path(journal.blobs).rglob("*") if p.is_file()}
    assert left == {hashlib.sha256(__import__("cloudpickle").dumps(shared, protocol=5)).hexdigest()}
    assert journal.load_context(live.run_id) == {"shared": shared}


def test_keep_alive_heartbeats_from_a_thread(journal: Journal) -> None:
    run = start(journal, heartbeat_interval_s=0.1)
    before = journal.get_run(run.run_id).summary.heartbeat_at
    with run.keep_alive(0.1):
        time.sleep(0.5)
    assert journal.get_run(run.run_id).summary.heartbeat_at > before + 0.2


def test_fingerprint_changes_with_order_class_and_weight() -> None:
    from synapse_steps import BaseStep, BaseStepContext, StepResult

    class Load(BaseStep[BaseStepContext]):
        name = "load"
        progress_weight = 0.5

        def execute(self, ctx: BaseStepContext) -> StepResult:
            return StepResult()

    (entry,) = entries_of([Load()])
    assert entry == StepEntry("load", f"{__name__}:test_fingerprint_changes_with_order_class_and_weight.<locals>.Load", 0.5)
    base = fingerprint(STEPS)
    assert fingerprint(list(STEPS)) == base
    assert fingerprint(STEPS[::-1]) != base
    assert fingerprint([StepEntry("load", "pkg.steps:Other", 0.2), *STEPS[1:]]) != base
    assert fingerprint([StepEntry("load", "pkg.steps:Load", 0.3), *STEPS[1:]]) != base


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### The journal's storage API", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block is not None
    out = subprocess.run([sys.executable, "-c", block.group(1)], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert out.stdout == "RunStatus.SUCCEEDED StepStatus.SUCCEEDED\n", out.stderr
    assert (tmp_path / "runs.db").is_file()


def test_params_that_json_cannot_hold_are_refused(journal: Journal) -> None:
    with pytest.raises(JournalError, match=r"^run 'r2': params must be JSON-compatible to be journaled: Object of type set is not JSON serializable$"):
        start(journal, run_id="r2", params={"tags": {"a"}})
    assert journal.list_runs() == []


def test_take_over_names_the_statuses_it_accepts(journal: Journal) -> None:
    run = start(journal)
    run.finish(RunStatus.INTERRUPTED)
    with pytest.raises(JournalError, match=rf"^run '{run.run_id}' is interrupted, not rollback_incomplete$"):
        journal.take_over(run.run_id, allowed={RunStatus.ROLLBACK_INCOMPLETE})
    assert journal.take_over(run.run_id).epoch == 2  # a stored 'interrupted' is resumable by default


def test_an_outcome_and_its_context_commit_in_one_write(journal: Journal) -> None:
    run = start(journal)
    a = run.step_started("load", 0)
    assert run.step_finished("load", a, StepStatus.SUCCEEDED, result={}, context={"rows": 7}) == 1
    b = run.step_started("train", 1)
    assert run.step_finished("train", b, StepStatus.FAILED, error=boom()) is None
    got = journal.get_run(run.run_id)
    assert [(x.step, x.context_seq) for x in got.attempts] == [("load", 1), ("train", None)]
    assert [(c.seq, c.step) for c in got.commits] == [(1, "load")]
    assert journal.load_context(run.run_id) == {"rows": 7}


def test_records_are_json_ready(journal: Journal) -> None:
    import dataclasses
    import json

    run = start(journal)
    a = run.step_started("load", 0, node="node-a")
    run.step_finished("load", a, StepStatus.FAILED, error=boom(), context={"rows": 1})
    run.rollback_finished("load", RollbackStatus.NOT_RUN)
    shown = json.loads(json.dumps(dataclasses.asdict(journal.get_run(run.run_id))))
    assert shown["summary"]["status"] == "running" and shown["steps"] == ["load", "train", "save"]
    assert shown["attempts"][0]["status"] == "FAILED" and shown["attempts"][0]["error"]["type"] == "ValueError"
    assert shown["rollbacks"] == [{"step": "load", "status": "not run", "node": None, "error": None, "started_at": None,
                                   "finished_at": shown["rollbacks"][0]["finished_at"]}]
    assert json.loads(json.dumps([dataclasses.asdict(r) for r in journal.list_runs()]))[0]["run_id"] == run.run_id
