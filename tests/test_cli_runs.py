"""``synapse-steps runs list | show | prune``: the real CLI over journals written with the real Journal API.

Runs are journaled by ``Journal``/``RunJournal`` as a driver would; the interrupted one by a
real driver process SIGKILLed in the middle of step 2 (``crashed_run``). The commands run
through ``main`` (the console script's entry point) or as ``python -m synapse_steps.cli``.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click
import pytest
from sqlalchemy import update

from synapse_steps.cli import main
from synapse_steps.cli.runs import Duration, open_journal
from synapse_steps.cli.runs_format import duration
from synapse_steps.cli.target import CliError
from synapse_steps.journal import ErrorInfo, Journal, RollbackStatus, RunStatus, StepEntry, StepStatus, schema
from tests.journal_fixtures import crashed_run, postgres_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(120)
STEPS = [StepEntry("load", "pkg.steps:Load", 0.2), StepEntry("train", "pkg.steps:Train", 0.6), StepEntry("save", "pkg.steps:Save", 0.2)]
BIG = b"w" * (1 << 20)  # a context value stored as a blob


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def local(t: float) -> str:
    """A time as the commands show it: local time, to the second."""
    return datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def failure() -> ErrorInfo:
    try:
        raise ValueError("disk full")
    except ValueError as exc:
        return ErrorInfo.of(exc)


def succeeded_run(journal: Journal, run_id: str = "run-ok") -> str:
    run = journal.start_run(run_id=run_id, target="pkg.actions:Train", params={"epochs": 3}, registry=STEPS, executor={"kind": "local"})
    for order, entry in enumerate(STEPS):
        attempt = run.step_started(entry.name, order, node="node-a")
        run.step_finished(entry.name, attempt, StepStatus.SUCCEEDED, result={"order": order})
    run.progress(1.0, "save")
    run.finish(RunStatus.SUCCEEDED, metrics={"train": {"accuracy": 0.97}})
    return run_id


def failed_run(journal: Journal) -> str:
    """load succeeds (committing a blob), train fails, its rollback is done and load's fails."""
    run = journal.start_run(run_id="run-failed", target="pkg.actions:Train", params={"epochs": 1}, registry=STEPS, executor={"kind": "ray"})
    attempt = run.step_started("load", 0, node="node-a")
    run.commit_context({"rows": 100, "weights": BIG}, step="load")
    run.step_finished("load", attempt, StepStatus.SUCCEEDED, result={"rows": 100})
    attempt = run.step_started("train", 1, node="node-b")
    run.progress(0.5, "train")
    run.step_finished("train", attempt, StepStatus.FAILED, error=failure())
    run.rollback_started("train", node="node-b")
    run.rollback_finished("train", RollbackStatus.DONE)
    run.rollback_started("load", node="node-a")
    run.rollback_finished("load", RollbackStatus.FAILED, error=failure())
    run.finish(RunStatus.ROLLBACK_INCOMPLETE, error="Step 'train' failed: disk full")
    return run.run_id


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/runs.db"


@pytest.fixture
def history(url: str, tmp_path: Path) -> dict[str, str]:
    """Four runs, oldest first: succeeded, rollback incomplete, interrupted (a killed driver), running (this process)."""
    with Journal.open(url) as journal:
        runs = {"succeeded": succeeded_run(journal), "failed": failed_run(journal)}
    runs["interrupted"] = crashed_run(url, str(tmp_path / "runs.db.blobs"))
    with Journal.open(url) as journal:
        live = journal.start_run(run_id="run-live", target="pkg.actions:Upload", params={}, registry=STEPS[:1], executor={})
        live.step_started("load", 0)
    runs["running"] = "run-live"
    return runs


def run_ids(url: str) -> list[str]:
    with Journal.open(url) as journal:
        return sorted(r.run_id for r in journal.list_runs(limit=None))


# -- list ------------------------------------------------------------------------------------


def test_list_shows_a_table_newest_first_in_local_time(url: str, history: dict[str, str]) -> None:
    env = {**os.environ, "TZ": "Asia/Kolkata", "COLUMNS": "80"}
    done = subprocess.run(
        [sys.executable, "-m", "synapse_steps.cli", "runs", "list", "--journal", url],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in done.stdout.splitlines() if line.startswith("│")]
    header = [cell.strip() for cell in done.stdout.splitlines()[1].split("┃")[1:-1]]
    assert header == ["run id", "status", "target", "started (local time)", "duration", "owner"]
    with Journal.open(url) as journal:
        summaries = journal.list_runs()
    kolkata = ZoneInfo("Asia/Kolkata")
    expected = [
        [
            s.run_id,
            s.status.value,
            s.target,
            datetime.fromtimestamp(s.created_at, kolkata).strftime("%Y-%m-%d %H:%M:%S"),
            "-" if s.duration_s is None else f"{s.duration_s:.2f} s",
            f"{socket.gethostname()} pid {s.owner.pid}",
        ]
        for s in summaries
    ]
    assert rows == expected
    assert [r[0] for r in rows] == [history["running"], history["interrupted"], history["failed"], history["succeeded"]]
    assert [r[1] for r in rows] == ["running", "interrupted", "rollback_incomplete", "succeeded"]
    assert rows[0][4] == rows[1][4] == "-"  # not finished: no duration


def test_list_json_is_one_object_per_run_with_statuses_as_values(capsys: pytest.CaptureFixture[str], url: str, history: dict[str, str]) -> None:
    code, out, err = cli(capsys, "runs", "list", "--json", "--journal", url)
    assert (code, err) == (0, "")
    runs = [json.loads(line) for line in out.splitlines()]
    assert [r["run_id"] for r in runs] == [history[s] for s in ("running", "interrupted", "failed", "succeeded")]
    assert [(r["status"], r["stored_status"]) for r in runs] == [
        ("running", "running"), ("interrupted", "running"), ("rollback_incomplete", "rollback_incomplete"), ("succeeded", "succeeded")
    ]  # fmt: skip
    ok = runs[3]
    assert set(ok) == {
        "run_id", "target", "status", "stored_status", "owner", "owner_epoch", "created_at", "updated_at",
        "finished_at", "heartbeat_at", "error", "metrics", "duration_s",
    }  # fmt: skip
    assert ok["metrics"] == {"train": {"accuracy": 0.97}} and ok["target"] == "pkg.actions:Train"
    assert ok["owner"]["host"] == socket.gethostname() and ok["owner"]["pid"] == os.getpid()
    assert ok["duration_s"] == pytest.approx(ok["finished_at"] - ok["created_at"])
    assert runs[2]["error"] == "Step 'train' failed: disk full" and runs[2]["metrics"] is None
    assert runs[1]["owner"]["pid"] != os.getpid() and runs[1]["finished_at"] is None and runs[1]["duration_s"] is None


def test_list_filters_on_the_derived_status_and_limits(capsys: pytest.CaptureFixture[str], url: str, history: dict[str, str]) -> None:
    def listed(*args: str) -> list[str]:
        code, out, err = cli(capsys, "runs", "list", "--json", "--journal", url, *args)
        assert (code, err) == (0, "")
        return [json.loads(line)["run_id"] for line in out.splitlines()]

    assert listed("--status", "interrupted") == [history["interrupted"]]
    assert listed("--status", "running") == [history["running"]]
    assert listed("--status", "succeeded") == [history["succeeded"]]
    assert listed("--status", "failed") == []
    assert listed("--limit", "2") == [history["running"], history["interrupted"]]
    code, out, err = cli(capsys, "runs", "list", "--status", "crashed", "--journal", url)
    assert code == 2 and out == ""
    assert "Invalid value for '--status': 'crashed' is not one of 'running', 'succeeded', 'failed', 'interrupted', " in err
    code, _, err = cli(capsys, "runs", "list", "--limit", "0", "--journal", url)
    assert code == 2 and "Invalid value for '--limit': 0 is not in the range x>=1." in err


def test_list_of_an_empty_journal_says_so(capsys: pytest.CaptureFixture[str], url: str) -> None:
    assert cli(capsys, "runs", "list", "--journal", url) == (0, "", f"no runs in journal {url}\n")
    assert cli(capsys, "runs", "list", "--status", "interrupted", "--journal", url) == (0, "", f"no interrupted runs in journal {url}\n")
    assert cli(capsys, "runs", "list", "--json", "--journal", url) == (0, "", "")


def test_the_journal_defaults_to_the_environment_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str, tmp_path: Path
) -> None:
    with Journal.open(url) as journal:
        succeeded_run(journal)
    monkeypatch.setenv("SYNAPSE_STEPS_JOURNAL", url)
    code, out, _ = cli(capsys, "runs", "list", "--json")
    assert code == 0 and [json.loads(line)["run_id"] for line in out.splitlines()] == ["run-ok"]
    monkeypatch.delenv("SYNAPSE_STEPS_JOURNAL")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert cli(capsys, "runs", "list", "--json") == (0, "", "")  # the per-user default: a new, empty journal
    assert (tmp_path / "state" / "synapse-steps" / "runs.db").is_file()


# -- show ------------------------------------------------------------------------------------


def test_show_prints_every_attempt_traceback_rollback_and_commit(capsys: pytest.CaptureFixture[str], url: str, history: dict[str, str]) -> None:
    code, out, err = cli(capsys, "runs", "show", history["failed"], "--journal", url)
    assert (code, err) == (0, "")
    with Journal.open(url) as journal:
        detail = journal.get_run(history["failed"])
    lines = out.splitlines()
    load, train = detail.attempts
    commit = detail.commits[0]
    assert train.error is not None and detail.summary.finished_at is not None
    tb = train.error.traceback
    assert tb is not None and tb.startswith("Traceback (most recent call last):") and 'raise ValueError("disk full")' in tb
    assert lines[:12] == [
        "run        run-failed",
        "status     rollback_incomplete",
        "target     pkg.actions:Train",
        'params     {"epochs": 1}',
        'executor   {"kind": "ray"}',
        f"owner      {socket.gethostname()} pid {os.getpid()} (epoch 1), last heartbeat {local(detail.summary.heartbeat_at)}",
        f"started    {local(detail.summary.created_at)}",
        f"finished   {local(detail.summary.finished_at)}",
        f"duration   {detail.summary.duration_s:.2f} s",
        "progress   50% (step train)",
        "error      Step 'train' failed: disk full",
        "metrics    -",
    ]
    traceback_lines = tb.rstrip("\n").splitlines()
    rollbacks = {r.step: r for r in detail.rollbacks}
    assert lines[12:] == [
        "",
        "steps",
        "  1. load (pkg.steps:Load, weight 0.2)",
        f"     attempt 1: SUCCEEDED, node node-a, {load.duration_s:.2f} s, context #1",
        '       result     {"rows": 100}',
        "  2. train (pkg.steps:Train, weight 0.6)",
        f"     attempt 1: FAILED, node node-b, {train.duration_s:.2f} s",
        "       error      ValueError: disk full",
        "       traceback",
        *[f"         {line}" for line in traceback_lines],
        "  3. save (pkg.steps:Save, weight 0.2)",
        "     not started",
        "",
        "rollbacks (in the order they ran)",
        f"  train: done, node node-b, {rollbacks['train'].duration_s:.2f} s",
        f"  load: failed, node node-a, {rollbacks['load'].duration_s:.2f} s",
        "    error      ValueError: disk full",
        "    traceback",
        *[f"      {line}" for line in traceback_lines],
        "",
        "context commits",
        f"  #1 after load at {local(commit.committed_at)}: rows, weights",
        f"    blob {commit.blobs[0]}",
    ]


def test_show_json_has_the_run_its_steps_attempts_rollbacks_and_commits(
    capsys: pytest.CaptureFixture[str], url: str, history: dict[str, str]
) -> None:
    code, out, err = cli(capsys, "runs", "show", history["failed"], "--json", "--journal", url)
    assert (code, err) == (0, "") and len(out.splitlines()) == 1
    run = json.loads(out)
    assert (run["run_id"], run["status"], run["params"], run["executor"]) == ("run-failed", "rollback_incomplete", {"epochs": 1}, {"kind": "ray"})
    assert run["progress"]["overall"] == 0.5 and run["progress"]["step"] == "train"
    assert [(s["name"], s["cls"], s["weight"], len(s["attempts"])) for s in run["steps"]] == [
        ("load", "pkg.steps:Load", 0.2, 1), ("train", "pkg.steps:Train", 0.6, 1), ("save", "pkg.steps:Save", 0.2, 0)
    ]  # fmt: skip
    load, train = run["steps"][0]["attempts"][0], run["steps"][1]["attempts"][0]
    assert (load["status"], load["node"], load["result"], load["context_seq"], load["error"]) == ("SUCCEEDED", "node-a", {"rows": 100}, 1, None)
    assert (train["status"], train["node"], train["error"]["type"], train["error"]["message"]) == ("FAILED", "node-b", "ValueError", "disk full")
    assert train["error"]["traceback"].startswith("Traceback (most recent call last):")
    assert train["duration_s"] == pytest.approx(train["finished_at"] - train["started_at"])
    assert [(r["step"], r["status"], r["node"]) for r in run["rollbacks"]] == [("train", "done", "node-b"), ("load", "failed", "node-a")]
    assert run["rollbacks"][0]["error"] is None and run["rollbacks"][1]["error"]["message"] == "disk full"
    [commit] = run["commits"]
    assert (commit["seq"], commit["step"], commit["fields"]) == (1, "load", ["rows", "weights"])
    assert len(commit["blobs"]) == 1 and len(commit["blobs"][0]) == 64


def test_show_lists_each_attempt_of_a_resumed_run_and_its_metrics(capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path) -> None:
    run_id = crashed_run(url, str(tmp_path / "runs.db.blobs"))
    with Journal.open(url) as journal:
        run = journal.take_over(run_id)  # as ``resume`` does: the in-flight step runs again
        attempt = run.step_started("train", 1, node="node-c")
        run.step_finished("train", attempt, StepStatus.SUCCEEDED, result={"epochs": 3})
        attempt = run.step_started("save", 2, node="node-c")
        run.step_finished("save", attempt, StepStatus.SKIPPED)
        attempt = run.step_started("publish", 3, node="node-c")  # resumed with --force on a grown registry
        run.step_finished("publish", attempt, StepStatus.SUCCEEDED)
        run.finish(RunStatus.SUCCEEDED, metrics={"train": {"loss": 0.1}})
    code, out, _ = cli(capsys, "runs", "show", run_id, "--journal", url)
    assert code == 0
    lines = out.splitlines()
    train_at = lines.index("  2. train (pkg.steps:Train, weight 0.6)")
    assert lines[train_at + 1] == "     attempt 1: STARTED, node node-a, -"
    assert lines[train_at + 2].startswith("     attempt 2: SUCCEEDED, node node-c, ")
    assert lines[train_at + 3] == '       result     {"epochs": 3}'
    assert lines[train_at + 5].startswith("     attempt 1: SKIPPED, node node-c, ")
    assert lines[train_at + 6] == "  4. publish (not in the run's registry)"
    assert lines[train_at + 7].startswith("     attempt 1: SUCCEEDED, node node-c, ")
    assert 'metrics    {"train": {"loss": 0.1}}' in lines and "status     succeeded" in lines
    assert lines[lines.index("rollbacks (in the order they ran)") + 1] == "  none"
    code, out, _ = cli(capsys, "runs", "show", run_id, "--json", "--journal", url)
    run_json = json.loads(out)
    assert [a["attempt"] for a in run_json["steps"][1]["attempts"]] == [1, 2]
    assert [(s["name"], s["cls"], len(s["attempts"])) for s in run_json["steps"]] == [
        ("load", "pkg.steps:Load", 1), ("train", "pkg.steps:Train", 2), ("save", "pkg.steps:Save", 1), ("publish", None, 1)
    ]  # fmt: skip
    assert run_json["metrics"] == {"train": {"loss": 0.1}} and run_json["owner_epoch"] == 2


# -- prune -----------------------------------------------------------------------------------


def _age(url: str, run_id: str, days: float) -> None:
    """Make ``run_id`` look last written ``days`` ago."""
    engine = Journal.open(url)._engine
    with engine.begin() as conn:
        conn.execute(update(schema.runs).where(schema.runs.c.run_id == run_id).values(updated_at=time.time() - days * 86400))
    engine.dispose()


def test_prune_deletes_old_runs_and_never_a_live_one(capsys: pytest.CaptureFixture[str], url: str, history: dict[str, str]) -> None:
    for name in ("succeeded", "failed", "interrupted", "running"):
        _age(url, history[name], days=31)
    with Journal.open(url) as journal:
        succeeded_run(journal, "run-recent")
    code, out, err = cli(capsys, "runs", "prune", "--older-than", "30d", "--journal", url)
    assert (code, err) == (0, "")
    gone = sorted(history[name] for name in ("succeeded", "failed", "interrupted"))
    with Journal.open(url) as journal:
        order = [r.run_id for r in journal.list_runs()]
    assert out.splitlines()[0] == f"pruned 3 runs not active for 30d from {url}"
    assert sorted(line.strip() for line in out.splitlines()[1:]) == gone
    assert order == ["run-recent", "run-live"]  # the live run stays, however old its last write
    assert not [p for p in Path(url.removeprefix("sqlite:///") + ".blobs").rglob("*") if p.is_file()]  # the blob went too
    code, out, _ = cli(capsys, "runs", "prune", "--older-than", "2w", "--json", "--journal", url)
    assert code == 0 and json.loads(out) == {"journal": url, "older_than_s": 14 * 86400, "count": 0, "run_ids": []}
    code, out, _ = cli(capsys, "runs", "prune", "--older-than", "0s", "--json", "--journal", url)
    assert json.loads(out)["run_ids"] == ["run-recent"] and run_ids(url) == ["run-live"]
    assert cli(capsys, "runs", "prune", "--older-than", "1s", "--journal", url)[1] == f"pruned 0 runs not active for 1s from {url}\n"


def test_durations_are_shown_in_seconds_under_a_minute_else_hours_minutes_seconds() -> None:
    assert [duration(s) for s in (None, 0.8, 59.5, 65, 3 * 3600 + 7, 90061)] == ["-", "0.80 s", "59.50 s", "0:01:05", "3:00:07", "1 day, 1:01:01"]


@pytest.mark.parametrize(("text", "seconds", "shown"), [("90s", 90, "90s"), ("15m", 900, "15m"), ("12h", 43200, "12h"), ("30d", 2592000, "30d"), ("2w", 1209600, "2w"), ("120m", 7200, "2h"), ("0d", 0, "0s")])
def test_durations(text: str, seconds: int, shown: str) -> None:
    assert Duration().convert(text, None, None) == seconds and Duration.show(seconds) == shown


@pytest.mark.parametrize("bad", ["30", "d", "1.5h", "-3d", "30 days", "3y", ""])
def test_a_bad_duration_is_a_usage_error_and_prunes_nothing(capsys: pytest.CaptureFixture[str], url: str, bad: str) -> None:
    with Journal.open(url) as journal:
        succeeded_run(journal)
    code, out, err = cli(capsys, "runs", "prune", "--older-than", bad, "--journal", url)
    assert code == 2 and out == ""
    assert err.splitlines()[-1] == (
        f"Error: Invalid value for '--older-than': {bad!r} is not a duration: a whole number and s, m, h, d or w (90s, 15m, 12h, 30d, 2w)"
    )
    assert run_ids(url) == ["run-ok"]
    with pytest.raises(click.BadParameter):
        Duration().convert(bad, None, None)


# -- bad input: one line on stderr, exit 2, nothing changed -----------------------------------


def test_open_journal_turns_a_refusal_into_a_cli_error(url: str) -> None:
    with pytest.raises(CliError) as info:
        open_journal("sqlite://")
    assert str(info.value) == "journal URL 'sqlite://' names no file: an in-memory journal would not outlive the driver"
    with open_journal(url) as journal:
        assert journal.url == url and journal.list_runs() == []


def test_an_unknown_run_id_is_named(capsys: pytest.CaptureFixture[str], url: str) -> None:
    with Journal.open(url) as journal:
        succeeded_run(journal)
    for extra in ([], ["--json"]):
        assert cli(capsys, "runs", "show", "run-nope", *extra, "--journal", url) == (2, "", "error: no run 'run-nope' in the journal\n")
    assert run_ids(url) == ["run-ok"]


@pytest.mark.parametrize(
    ("journal", "message"),
    [
        ("not a url", "error: journal URL 'not a url' does not parse; use sqlite:///PATH or postgresql+psycopg://...\n"),
        ("mysql://u@h/db", "error: journal URL 'mysql://u@h/db': unsupported database 'mysql'; use sqlite:///PATH or postgresql+psycopg://...\n"),
        ("sqlite:////no/such/folder/runs.db", "error: journal URL 'sqlite:////no/such/folder/runs.db': folder '/no/such/folder' does not exist\n"),
    ],
)
@pytest.mark.parametrize("command", [["list"], ["show", "run-x"], ["prune", "--older-than", "1d"]])
def test_a_journal_url_that_does_not_parse(capsys: pytest.CaptureFixture[str], journal: str, message: str, command: list[str]) -> None:
    assert cli(capsys, "runs", *command, "--journal", journal) == (2, "", message)


def test_a_database_that_does_not_answer(capsys: pytest.CaptureFixture[str]) -> None:
    began = time.monotonic()
    code, out, err = cli(capsys, "runs", "list", "--journal", "postgresql+psycopg://nobody:secret@127.0.0.1:1/x")
    assert (code, out) == (2, "") and time.monotonic() - began < 10
    assert err.startswith("error: journal postgresql+psycopg://nobody:***@127.0.0.1:1/x does not answer: ")
    assert err.count("\n") == 1 and "secret" not in err


def test_a_journal_written_by_a_newer_version_is_refused_untouched(capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path) -> None:
    with Journal.open(url) as journal:
        succeeded_run(journal)
    db = sqlite3.connect(tmp_path / "runs.db")
    db.execute("INSERT INTO schema_version (version, applied_at) VALUES (9, 0)")
    db.commit()
    for command in (["list"], ["show", "run-ok"], ["prune", "--older-than", "0s"]):
        assert cli(capsys, "runs", *command, "--journal", url) == (
            2, "", f"error: journal {url} has schema version 9, newer than this synapse-steps knows (2): upgrade synapse-steps to use it\n"
        )  # fmt: skip
    assert db.execute("SELECT version FROM schema_version ORDER BY version").fetchall() == [(1,), (2,), (9,)]
    assert db.execute("SELECT run_id, status FROM runs").fetchall() == [("run-ok", "succeeded")]
    db.close()


# -- Postgres --------------------------------------------------------------------------------


def test_runs_on_postgres(capsys: pytest.CaptureFixture[str], postgres_server, tmp_path: Path) -> None:  # noqa: F811
    url = postgres_server.new_database()
    with Journal.open(url, blobs=str(tmp_path / "blobs")) as journal:
        ok = succeeded_run(journal)
    crashed = crashed_run(url, str(tmp_path / "blobs"))
    code, out, _ = cli(capsys, "runs", "list", "--json", "--journal", url)
    assert code == 0 and [(r["run_id"], r["status"]) for r in map(json.loads, out.splitlines())] == [(crashed, "interrupted"), (ok, "succeeded")]
    code, out, _ = cli(capsys, "runs", "show", crashed, "--json", "--journal", url)
    run = json.loads(out)
    assert [[(a["status"], a["node"]) for a in s["attempts"]] for s in run["steps"]] == [[("SUCCEEDED", "node-a")], [("STARTED", "node-a")], []]
    assert run["commits"][0]["fields"] == ["rows"]
    code, out, _ = cli(capsys, "runs", "prune", "--older-than", "0s", "--journal", url)
    assert code == 0 and out.splitlines()[0] == f"pruned 2 runs not active for 0s from {url}"
    assert cli(capsys, "runs", "show", ok, "--journal", url) == (2, "", f"error: no run {ok!r} in the journal\n")
