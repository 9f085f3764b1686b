"""The context actor's bookkeeping, tested as the plain class it is (no Ray needed)."""

from __future__ import annotations

import pytest

from ray_backend.context_actor import RunsHost, RunState
from synapse_steps import RuntimeEvent


def test_commits_keep_the_newest_version_only() -> None:
    state = RunState()
    state.commit(2, {"x": 2})
    state.commit(1, {"x": 1})  # a late, older commit never wins
    assert state.committed() == (2, {"x": 2})


def test_events_drain_once_in_send_order_and_progress_stays_readable() -> None:
    state = RunState()
    state.started("t1", "node-a")
    state.report("t1", [RuntimeEvent("event", None, {"i": 1}, name="a"), RuntimeEvent("progress", "s", {"current": 1, "total": 4})])
    state.report("t1", [RuntimeEvent("progress", "s", {"current": 3, "total": 4})])
    started, events = state.drain()
    assert started == {"t1": "node-a"}
    assert [e.kind for e in events] == ["event", "progress", "progress"]
    assert state.drain()[1] == []
    assert state.progress() == {"s": (3, 4)}


def test_a_task_whose_events_the_driver_replayed_from_copies_has_its_batches_dropped() -> None:
    state = RunState()
    state.report("t1", [RuntimeEvent("event", None, {"i": 1}, name="early")])
    state.report("t2", [RuntimeEvent("event", None, {"i": 2}, name="other")])
    state.commit(1, {}, "t1", replayed=True)
    state.report("t1", [RuntimeEvent("event", None, {"i": 3}, name="late")])  # arrives after: dropped too
    assert [e.name for e in state.drain()[1]] == ["other"]
    state.commit(2, {}, "t2")  # drained normally: nothing to drop, later batches still count
    state.report("t2", [RuntimeEvent("event", None, {"i": 4}, name="after")])
    assert [e.name for e in state.drain()[1]] == ["after"]


def test_runs_in_one_host_see_only_their_own_state() -> None:
    host = RunsHost()
    host.call("run-a", "commit", 1, {"x": "a"})
    host.call("run-b", "report", "t1", [RuntimeEvent("event", None, {}, name="b's")], {"x": "b live"})
    host.call("run-a", "report", "t1", [RuntimeEvent("event", None, {}, name="a's")])  # same token, other run
    assert host.call("run-a", "committed") == (1, {"x": "a"})
    assert host.call("run-b", "committed") == (0, {})
    assert host.call("run-a", "live", "t1") is None and host.call("run-b", "live", "t1") == {"x": "b live"}
    assert [e.name for e in host.call("run-b", "drain")[1]] == ["b's"]
    assert [e.name for e in host.call("run-a", "drain")[1]] == ["a's"]
    assert host.open_runs() == ["run-a", "run-b"]


def test_a_closed_run_leaves_nothing_and_a_late_call_does_not_bring_it_back() -> None:
    host = RunsHost()
    host.call("run-a", "commit", 3, {"big": "value"})
    host.close("run-a")
    assert host.open_runs() == []
    # A stopped task of that run ships once more, seconds later: answered, kept nowhere.
    assert host.call("run-a", "report", "t1", [RuntimeEvent("event", None, {}, name="late")], {"x": 1}) is None
    assert host.call("run-a", "committed") == (0, {})
    assert host.open_runs() == []


def test_the_host_forgets_ended_runs_beyond_a_bound() -> None:
    host = RunsHost(ended_kept=3)
    for i in range(5):
        host.call(f"run-{i}", "commit", 1, {})
        host.close(f"run-{i}")
    assert list(host._ended) == ["run-2", "run-3", "run-4"]


def test_a_channel_reaches_only_the_runstate_calls() -> None:
    with pytest.raises(AttributeError, match="RunState has no call 'exit'"):
        RunsHost().call("run-a", "exit")
