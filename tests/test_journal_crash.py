"""Crash detection and take-over: a SIGKILLed driver reads `interrupted`; of concurrent take-overs exactly one wins.

Real driver processes on SQLite and a real Postgres; the race is run with two processes and
with two threads on two connections.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from synapse_steps.journal import Journal, JournalError, Owner, RunStatus, StepStatus
from synapse_steps.journal.owner import current, is_alive
from tests.journal_fixtures import crashed_run, journal_url, postgres_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(120)


def test_a_killed_driver_reads_interrupted_and_can_be_taken_over(journal_url: str, tmp_path: Path) -> None:  # noqa: F811
    blobs = str(tmp_path / "blobs")
    run_id = crashed_run(journal_url, blobs)
    with Journal.open(journal_url, blobs=blobs) as journal:
        (listed,) = journal.list_runs(status=RunStatus.INTERRUPTED)
        assert (listed.run_id, listed.status, listed.stored_status) == (run_id, RunStatus.INTERRUPTED, RunStatus.RUNNING)
        got = journal.get_run(run_id)
        assert [(a.step, a.status) for a in got.attempts] == [("load", StepStatus.SUCCEEDED), ("train", StepStatus.STARTED)]
        assert got.succeeded_steps() == ["load"] and got.pending_rollbacks() == ["train", "load"]
        assert journal.load_context(run_id) == {"rows": 100}

        run = journal.take_over(run_id)
        assert run.epoch == 2
        assert run.step_started("train", 1) == 2  # the in-flight step runs again, as attempt 2
        summary = journal.get_run(run_id).summary
        assert (summary.status, summary.owner.pid, summary.owner_epoch) == (RunStatus.RUNNING, os.getpid(), 2)
        assert journal.list_runs(status=RunStatus.INTERRUPTED) == []


_CONTENDER = """
import sys
from synapse_steps.journal import Journal, JournalError
journal = Journal.open(sys.argv[1], blobs=sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()  # "go": both contenders are connected and waiting
try:
    journal.take_over(sys.argv[3])
    print("won", flush=True)
except JournalError as exc:
    print(f"lost: {exc}", flush=True)
sys.stdin.readline()  # a winner stays alive until the test has read both answers
"""


def test_two_processes_race_to_take_over_and_exactly_one_wins(journal_url: str, tmp_path: Path) -> None:  # noqa: F811
    blobs = str(tmp_path / "blobs")
    run_id = crashed_run(journal_url, blobs)
    cmd = [sys.executable, "-c", textwrap.dedent(_CONTENDER), journal_url, blobs, run_id]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        answers = sorted(p.stdout.readline().strip() for p in procs if p.stdout is not None)
    finally:
        for p in procs:
            if p.stdin is not None:
                p.stdin.close()
            p.wait(timeout=30)
    assert answers[1] == "won", answers
    # The loser either lost the compare-and-swap or saw the winner already running.
    assert answers[0].startswith(f"lost: run '{run_id}' "), answers
    assert " was taken over first by " in answers[0] or " is still running (owner " in answers[0]
    with Journal.open(journal_url, blobs=blobs) as journal:
        assert journal.get_run(run_id).summary.owner_epoch == 2


def test_two_threads_on_two_connections_compare_and_swap_once(journal_url: str, tmp_path: Path) -> None:  # noqa: F811
    blobs = str(tmp_path / "blobs")
    run_id = crashed_run(journal_url, blobs)
    journals = [Journal.open(journal_url, blobs=blobs) for _ in range(2)]
    epoch = journals[0].get_run(run_id).summary.owner_epoch
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def contend(journal: Journal) -> None:
        barrier.wait()
        try:
            journal._claim(run_id, epoch, heartbeat_interval_s=10.0)  # both read the same epoch: a true race
            outcomes.append("won")
        except JournalError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=contend, args=(j,)) for j in journals]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for j in journals:
        j.close()
    assert sorted(outcomes)[1] == "won", outcomes
    assert min(outcomes).startswith(f"run '{run_id}' was taken over first by {socket.gethostname()} pid {os.getpid()}")


def test_a_stale_epoch_never_takes_over(journal_url: str, tmp_path: Path) -> None:  # noqa: F811
    blobs = str(tmp_path / "blobs")
    run_id = crashed_run(journal_url, blobs)
    with Journal.open(journal_url, blobs=blobs) as journal:
        journal.take_over(run_id)
        with pytest.raises(JournalError, match=rf"^run '{run_id}' was taken over first by "):
            journal._claim(run_id, 1, heartbeat_interval_s=10.0)
        assert journal.get_run(run_id).summary.owner_epoch == 2


def test_liveness_on_this_host_compares_the_process_start() -> None:
    me = current()
    assert is_alive(me, heartbeat_at=0.0, interval_s=1.0, now=time.time())  # the heartbeat does not matter here
    assert me.started is not None, "Linux: /proc gives the start mark"
    reused = Owner(me.host, me.pid, me.started.rsplit(":", 1)[0] + ":1")
    assert not is_alive(reused, heartbeat_at=time.time(), interval_s=1.0, now=time.time())

    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not is_alive(Owner(me.host, zombie.pid, None), heartbeat_at=time.time(), interval_s=1.0, now=time.time())
    zombie.wait()
    assert not is_alive(Owner(me.host, zombie.pid, None), heartbeat_at=time.time(), interval_s=1.0, now=time.time())


def test_liveness_on_another_host_is_three_heartbeat_intervals() -> None:
    elsewhere = Owner("some-other-host", 1, None)
    assert is_alive(elsewhere, heartbeat_at=100.0, interval_s=10.0, now=130.0)
    assert not is_alive(elsewhere, heartbeat_at=100.0, interval_s=10.0, now=130.5)
