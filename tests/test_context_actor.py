"""The context actor's bookkeeping, tested as the plain class it is (no Ray needed)."""

from __future__ import annotations

from ray_backend.context_actor import RunState
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
